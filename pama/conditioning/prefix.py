"""The prefix form (Conditioned Language Policies, RiC): a plain LoRA adapter whose preference is written as a line
before the user prompt ("Preference weights: informativeness 0.30, conciseness 0.70"). The line, the prompts as such an
adapter reads them, and the cut that keeps the line on a long prompt; an svd adapter's prompts pass unchanged."""
from __future__ import annotations

from typing import Sequence

from .. import models
from .gates import ConditioningError, _targets, check_preference

PREFIX_HEAD = "Preference weights: "

__all__ = ["PREFIX_HEAD", "prefix_text", "prompt_prefix", "fit_prompt", "prompts_at"]


def prefix_text(objectives: Sequence[str], p: Sequence[float]) -> str:
    """The line a prefix-conditioned adapter reads before the prompt."""
    return PREFIX_HEAD + ", ".join(f"{o} {float(w):.2f}" for o, w in zip(objectives, p)) + "\n\n"


def prompt_prefix(model, p, *, adapter: str | None = None) -> str:
    """The text to write before every prompt at one preference ``p``: the preference line for a prefix-conditioned
    adapter, '' for an svd one."""
    info = _targets(model, adapter)[0]
    if info.form != "prefix":
        return ""
    return prefix_text(info.objectives, check_preference(p, info.n, info.objectives)[0].tolist())


def _chat_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(models.chat_prompts(tokenizer, [text])[0], add_special_tokens=False)["input_ids"])


def fit_prompt(tokenizer, prefix: str, prompt: str) -> str:
    """``prefix + prompt``, the prompt's start cut so that the chat-formatted whole fits ``models.PROMPT_MAX_TOKENS``.

    ``models.encode`` cuts over-long prompts from the left, which would drop a prefix-conditioned adapter's preference
    line first; cutting the user's prompt instead keeps the line (and the prompt's end, where the question usually
    is, as the left cut does). Without a prefix or a tokenizer the text is returned as it is."""
    text = prefix + prompt
    if not prefix or tokenizer is None:
        return text
    excess = _chat_tokens(tokenizer, text) - models.PROMPT_MAX_TOKENS
    if excess <= 0:
        return text
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    while excess > 0 and ids:  # decoding and tokenising again can merge tokens at the cut: repeat until it fits
        ids = ids[excess:]
        text = prefix + tokenizer.decode(ids).lstrip()
        excess = _chat_tokens(tokenizer, text) - models.PROMPT_MAX_TOKENS
    return text


def prompts_at(model, prompts: Sequence[str], p, *, adapter: str | None = None, tokenizer=None) -> list[str]:
    """The prompts as the adapter must read them at ``p`` ((n,) for all, or one row per prompt): unchanged for the svd
    form, each behind its preference line for the prefix form (with ``tokenizer``, an over-long prompt is cut so that
    the line stays: ``fit_prompt``)."""
    info = _targets(model, adapter)[0]
    if info.form != "prefix":
        return list(prompts)
    pref = check_preference(p, info.n, info.objectives)
    if pref.shape[0] not in (1, len(prompts)):
        raise ConditioningError(f"{pref.shape[0]} preferences for {len(prompts)} prompts: give one, or one per prompt")
    rows = pref.expand(len(prompts), -1).tolist()
    return [fit_prompt(tokenizer, prefix_text(info.objectives, row), text) for row, text in zip(rows, prompts)]

