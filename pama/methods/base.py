"""The interface a training method implements; the trainer's PPO loop calls only this (docs/ARCHITECTURE.md).

A method decides four things: how many value heads (and reward streams) it learns, how the per-objective rewards
become those streams, how the streams' advantages combine into one per step, and the policy loss (which may need
extra backward passes, as MGDA's per-objective gradients do). A new baseline or a conditioned variant is one new
file next to this one, registered in ``pama.methods.METHODS``."""
from __future__ import annotations

import torch

from .. import algorithm as alg
from ..config import TrainConfig


class Method:
    name = ""

    def __init__(self, cfg: TrainConfig, preference: list[float]):
        self.cfg = cfg
        self.preference = preference

    def n_value_heads(self, n_objectives: int) -> int:
        """One value head per reward stream; by default one stream per objective."""
        return n_objectives

    def reward_streams(self, scores: torch.Tensor) -> torch.Tensor:
        """Per-objective scores (n, B) → the reward streams (k, B) that get a return, GAE and a value head each."""
        return scores

    def combine(self, adv: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Advantages (k, B, T) → (combined (B, T) or None, per-stream weights (k, B, T) or None)."""
        raise NotImplementedError

    def combine_stats(self, weights: torch.Tensor | None, mask: torch.Tensor, objectives) -> dict[str, float]:
        """Metrics about the combination of a step (e.g. PAMA's mean weight per objective)."""
        return {}

    def policy_loss(self, logp, old_logp, adv, combined, mask, params, objectives):
        """The clipped PPO policy loss of a mini-batch → (loss, surrogate stats, extra metrics)."""
        loss, s = alg.clipped_surrogate(logp, old_logp, combined, mask, self.cfg.cliprange)
        return loss, s, {}

    def run_name_suffix(self) -> str:
        """What the default run name adds after the preference (PAMA: its anchor)."""
        return ""
