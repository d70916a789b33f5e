"""The interface a training method implements; the trainer's PPO loop calls only this (docs/ARCHITECTURE.md).

A method decides four things: how many value heads (and reward streams) it learns, how the per-objective rewards
become those streams, how the streams' advantages combine into one per step, and the policy loss (which may need
extra backward passes, as MGDA's per-objective gradients do). A new baseline is one new file next to this one,
registered in ``pama.methods.METHODS``.

A conditioned run (``TrainConfig.conditioned``, docs/conditioned.md) passes ``preference``: one preference per sample,
shape (B, n), to ``reward_streams`` and ``combine``; a method that can use it sets ``conditionable = True`` (and is
listed in ``config.CONDITIONED_METHODS``). ``None`` means the run's own preference, ``self.preference``."""
from __future__ import annotations

import torch

from .. import algorithm as alg
from ..config import TrainConfig
from ..preference import Preference


class Method:
    name = ""
    conditionable = False   # takes a per-sample preference (a conditioned run)

    def __init__(self, cfg: TrainConfig, preference: Preference):
        self.cfg = cfg
        self.preference = preference  # made by the config (pama.preference); taken as it is

    def n_value_heads(self, n_objectives: int) -> int:
        """One value head per reward stream; by default one stream per objective."""
        return n_objectives

    def reward_streams(self, scores: torch.Tensor, preference: torch.Tensor | None = None) -> torch.Tensor:
        """Per-objective scores (n, B) → the reward streams (k, B) that get a return, GAE and a value head each."""
        return scores

    def combine(self, adv: torch.Tensor, mask: torch.Tensor, preference: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Advantages (k, B, T) → (combined (B, T) or None, per-stream weights (k, B, T) or None)."""
        raise NotImplementedError

    def weights_for(self, preference: torch.Tensor | None, like: torch.Tensor):
        """The preference the math takes: the run's Preference, or a per-sample (B, n) one as (n, B) on ``like``."""
        if preference is None:
            return self.preference
        return preference.to(device=like.device, dtype=like.dtype).T

    def combine_stats(self, weights: torch.Tensor | None, mask: torch.Tensor, objectives) -> dict[str, float]:
        """Metrics about the combination of a step (e.g. PAMA's mean weight per objective)."""
        return {}

    def policy_loss(self, logp, old_logp, adv, combined, mask, params, objectives, weights=None):
        """The clipped PPO policy loss of a mini-batch → (loss, surrogate stats, extra metrics). ``weights`` are the
        mini-batch's rows of what ``combine`` returned (k, B, T), or None."""
        loss, s = alg.clipped_surrogate(logp, old_logp, combined, mask, self.cfg.cliprange)
        return loss, s, {}

    def run_name_suffix(self) -> str:
        """What the default run name adds after the preference (PAMA: its anchor)."""
        return ""
