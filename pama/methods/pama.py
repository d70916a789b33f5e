"""PAMA: the closed-form per-token (or batch-mean) combination of the objectives' advantages (docs/PAMA_SPEC.md)."""
from __future__ import annotations

from .. import algorithm as alg
from .base import Method


class Pama(Method):
    name = "pama"
    conditionable = True

    def combine(self, adv, mask, preference=None):
        p = self.weights_for(preference, adv)   # per sample: c_b = (1 − λ)·p_b + λ·q_b
        if self.cfg.granularity == "batch":
            return alg.pama_combine_batch_mean(adv, mask, p, self.cfg.anchor)
        combined, w = alg.pama_combine(adv, p, self.cfg.anchor)
        return combined * mask, w

    def combine_stats(self, weights, mask, objectives):
        if weights is None:
            return {}
        return {f"pama/weight/{o.name}": float(alg.masked_mean(weights[i], mask)) for i, o in enumerate(objectives)}

    def run_name_suffix(self) -> str:
        return f" λ={self.cfg.anchor:g}"
