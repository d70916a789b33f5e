"""MGDA: one policy loss per objective, combined by the min-norm weights of their gradients (extra backward passes:
one per objective over the adapter's parameters, graph retained)."""
from __future__ import annotations

import torch
import torch.distributed as dist

from .. import algorithm as alg
from .base import Method


def mean_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """``x`` averaged over the data-parallel processes (torch.distributed's all-reduce, as Accelerate's
    ``reduce(..., "mean")`` does), or ``x`` itself in a single process. Every rank must call it, in the same order."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return x
    out = x.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def mgda_loss_weights(losses: list[torch.Tensor], params: list[torch.Tensor]) -> torch.Tensor:
    """MGDA's objective weights: one backward per loss over ``params`` (graph retained), the (n, d) gradient
    matrix, its Gram matrix and the min-norm solve (``alg.mgda_weights``). Returns weights (n,).

    Under data-parallel training each process holds the gradients of its own slice of the batch, while the step
    follows their average (DDP averages the final backward): the (n, d) matrix is averaged over the processes first,
    so every process solves the same min-norm problem, the batch's, and gets the same weights."""
    grads = []
    for L in losses:
        g = torch.autograd.grad(L, params, retain_graph=True, allow_unused=True)
        grads.append(torch.cat([(x if x is not None else torch.zeros_like(p)).reshape(-1) for x, p in zip(g, params)]))
    return alg.mgda_weights(mean_over_ranks(torch.stack(grads)))


class Mgda(Method):
    name = "mgda"

    def combine(self, adv, mask, preference=None):
        return None, None  # mgda combines gradients, not advantages

    def policy_loss(self, logp, old_logp, adv, combined, mask, params, objectives, weights=None):
        n, clip = adv.shape[0], self.cfg.cliprange
        losses = [alg.clipped_surrogate(logp, old_logp, adv[i], mask, clip)[0] for i in range(n)]
        w = mgda_loss_weights(losses, params)
        pg_loss = sum(w[i] * losses[i] for i in range(n))
        _, s = alg.clipped_surrogate(logp, old_logp, (w.view(-1, 1, 1) * adv).sum(0), mask, clip)
        return pg_loss, s, {f"mgda/weight/{o.name}": float(w[i]) for i, o in enumerate(objectives)}
