"""trl-grpo: TRL's GRPOTrainer, registered here for what every method has (its name, the default run name). It does
not run in this project's PPO loop: ``pama.trainer.train`` hands a trl-grpo config to ``pama.trl_grpo``, so the loop's
hooks below are never called (docs/PAMA_SPEC.md)."""
from __future__ import annotations

from .base import Method


class TrlGrpo(Method):
    name = "trl-grpo"
    conditionable = False   # TRL takes one fixed reward_weights per run

    def combine(self, adv, mask, preference=None):
        raise NotImplementedError("method trl-grpo is trained by TRL's GRPOTrainer (pama.trl_grpo), not the PPO loop")

    def run_name_suffix(self) -> str:
        return f" {self.cfg.aggregation}"
