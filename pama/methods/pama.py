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
            return alg.pama_combine_batch_mean(adv, mask, p, anchor=self.cfg.anchor)
        combined, w = alg.pama_combine(adv, p, anchor=self.cfg.anchor)
        return combined * mask, w

    def policy_loss(self, logp, old_logp, adv, combined, mask, params, objectives, weights=None):
        """With Noon (every A_i ≥ 0) the clipped surrogate of the combined advantage s* = Σ c_i A_i, which then equals
        Σ c_i·L_i; without it the objectives' own clipped surrogates combined by the per-token weights, Σ c_i·L_i
        (the paper's Σ c_i ∇L_i), since clipping Σ c_i A_i differs once the signs are mixed (docs/PAMA_SPEC.md)."""
        if self.cfg.uses_noon():
            return super().policy_loss(logp, old_logp, adv, combined, mask, params, objectives)
        if weights is None:
            raise ValueError("PAMA without Noon needs the per-token weights of its combination (policy_loss(..., "
                             "weights=...)): clipping the combined advantage is not Σ c_i·L_i when signs are mixed")
        clip = self.cfg.cliprange
        loss = alg.weighted_clipped_surrogate(logp, old_logp, adv, weights, mask, clip)
        _, s = alg.clipped_surrogate(logp.detach(), old_logp, combined, mask, clip)  # clip share, approx KL: logged
        return loss, s, {}

    def combine_stats(self, weights, mask, objectives):
        if weights is None:
            return {}
        return {f"pama/weight/{o.name}": float(alg.masked_mean(weights[i], mask)) for i, o in enumerate(objectives)}

    def run_name_suffix(self) -> str:
        return f" λ={self.cfg.anchor:g}"
