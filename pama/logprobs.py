"""Log-probabilities of sampled responses: which tokens count (``response_mask``) and their log-probs under a model
(``seq_logprobs_and_hidden``). Core code shared by the trainer (PPO ratios, KL) and evaluation (KL to the base)."""
from __future__ import annotations

import torch

from .sampling import forward_sharing_prefix


def ended_on_eos(response_ids: torch.Tensor, eos_ids: set[int]) -> torch.Tensor:
    """(B,) bool: the response holds an EOS, i.e. it ended on its own rather than at the token limit."""
    return torch.isin(response_ids, torch.tensor(sorted(eos_ids), device=response_ids.device)).any(-1)


def response_mask(response_ids: torch.Tensor, eos_ids: set[int]) -> torch.Tensor:
    """1 up to and including the first EOS: stopping is an action the policy must be credited for."""
    is_eos = torch.zeros_like(response_ids, dtype=torch.bool)
    for e in eos_ids:
        is_eos |= response_ids == e
    after = (is_eos.long().cumsum(-1) - is_eos.long()) > 0
    return (~after).float()


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0,
                   rows: int = 4) -> torch.Tensor:
    """log softmax(logits / temperature) at ``targets`` (B, T), as the chosen logit minus the row's logsumexp, a few
    rows at a time (TRL's selective_log_softmax): the (B, T, vocabulary) log-softmax is never built. At an evaluation
    batch of 32 × 256 tokens and SmolLM2's 49,152 words each full copy is 1.6 GB, and two processes' evaluations
    were OOM-killed on 24 GB (docs/learnability.md §17)."""
    out = []
    for lg, tg in zip(logits.split(rows), targets.split(rows)):
        lg = lg.float()
        if temperature != 1.0:
            lg = lg / temperature
        out.append(lg.gather(-1, tg.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(lg, dim=-1))
    return torch.cat(out) if out else logits.new_zeros(targets.shape, dtype=torch.float32)


def seq_logprobs_and_hidden(model, input_ids, attention_mask, query_len: int, *, hidden: bool = True,
                            share_prefix: bool = True, temperature: float = 1.0):
    """Log-probs of the response tokens and the last hidden state before each; logits only for the response.

    ``temperature``: the logits are divided by the sampling temperature first (as TRL does), so that π_old is the
    distribution the rollout sampled from and the ratio and KL compare like with like."""
    T = input_ids.shape[1] - query_len
    out, L, _ = forward_sharing_prefix(model, input_ids, attention_mask, query_len, share=share_prefix,
                                       logits_to_keep=T + 1, output_hidden_states=hidden)
    logp = token_logprobs(out.logits[:, :-1], input_ids[:, query_len:], temperature)
    h = out.hidden_states[-1][:, query_len - 1 - L:-1] if hidden else None
    return logp, h
