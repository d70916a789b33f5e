"""Objectives (reward functions) for multi-objective alignment.

An :class:`Objective` has a ``name`` (the spec it was built from), a one-line ``description``, normalisation
bounds ``lower``/``upper`` (used by :mod:`pama.pareto` for hypervolume), a ``direction`` (always ``"maximize"``)
and a batched scorer ``score(prompts, responses) -> list[float]``.

Naming (see docs/objectives.md):

* built-ins: ``sentiment``, ``conciseness``, ``length``, ``relevance`` (``relevance:echo=6``: copied prompt phrases
  earn nothing), ``safety``, ``readability``;
  parameters follow a colon: ``name:key=value,key=value`` (e.g. ``length:unit=words,scale=30,lo=0.5,hi=1.5``);
  every objective accepts ``lower=``/``upper=`` to override its normalisation bounds;
* ``hf:<model id or path>[:<label>][:key=value,...]``: a Hugging Face sequence-classification model
  (a label's logit, label by name or index, or the single output of a ``num_labels=1`` reward model);
* ``py:<module or file.py>:<function>[:key=value,...]``: a user callable, called by keyword as TRL calls reward
  functions, ``f(prompts=..., completions=..., **kwargs) -> list[float]`` (refused when ``allow_python=False``).

Everything heavy (the sentence embedder, profanity model, hf models) is loaded lazily, once, and cached.
"""
from __future__ import annotations

from .builtin import content_words, copied_share, flesch_reading_ease, syllables, token_count, word_count
from .builtin import _minilm_dir  # noqa: F401  (tests locate the bundled embedder through it)
from .registry import available, catalog, get, score_all
from .spec import Objective, ObjectiveError, Scorer, parse_spec

__all__ = [
    "Objective",
    "ObjectiveError",
    "Scorer",
    "available",
    "catalog",
    "content_words",
    "copied_share",
    "flesch_reading_ease",
    "get",
    "parse_spec",
    "score_all",
    "syllables",
    "token_count",
    "word_count",
]
