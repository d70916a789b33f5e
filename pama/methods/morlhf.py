"""MORLHF: linear scalarisation of the rewards by the preference, then single-objective PPO (one value head)."""
from __future__ import annotations

from .. import algorithm as alg
from .base import Method


class Morlhf(Method):
    name = "morlhf"
    conditionable = True

    def n_value_heads(self, n_objectives: int) -> int:
        return 1

    def reward_streams(self, scores, preference=None):
        pref = self.weights_for(preference, scores)                     # the run's Preference, or (n, B)
        return alg.linear_scalarise(scores, pref).unsqueeze(0)         # (1, B): each sample by its own p

    def combine(self, adv, mask, preference=None):
        return adv[0], None
