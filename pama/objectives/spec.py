"""The objective record, its error, and the spec mini-language: "name", "name:k=v,k=v", "hf:model[:label][:k=v]",
"py:module:function[:k=v]"; the lock that serialises loading a shared model."""
from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np


class ObjectiveError(ValueError):
    """A bad objective name/parameter, an unloadable model, or a scorer that returned bad values."""


Scorer = Callable[[list[str], list[str]], Sequence[float]]


@dataclass
class Objective:
    name: str
    description: str
    lower: float
    upper: float
    scorer: Scorer = field(repr=False, compare=False)
    direction: str = "maximize"
    params: dict[str, Any] = field(default_factory=dict)
    # True when the score is a function of the response's length alone (conciseness, length): a length-controlled
    # score of it means nothing, so reports say "is length" instead (pama.lengthcontrol)
    measures_length: bool = False

    def score(self, prompts: Sequence[str] | None, responses: Sequence[str]) -> list[float]:
        """Score a batch; ``prompts`` may be None for objectives that ignore the prompt (length, sentiment...)."""
        responses = [("" if r is None else str(r)) for r in responses]
        if prompts is None:
            prompts = [""] * len(responses)
        prompts = [("" if p is None else str(p)) for p in prompts]
        if len(prompts) != len(responses):
            raise ObjectiveError(
                f"objective {self.name!r}: got {len(prompts)} prompts but {len(responses)} responses"
            )
        if not responses:
            return []
        out = self.scorer(prompts, responses)
        return [float(v) for v in np.asarray(out, dtype=float).reshape(-1)]

    def normalise(self, values: Sequence[float]) -> np.ndarray:
        """Map values to [0, 1] by the bounds (clipped); larger is better."""
        v = (np.asarray(values, dtype=float) - self.lower) / (self.upper - self.lower)
        return np.clip(v, 0.0, 1.0)


# ----------------------------------------------------------------------------------------------------------------
# Spec parsing: "name", "name:k=v,k=v", "hf:model[:label][:k=v,...]", "py:module:function[:k=v,...]"
# ----------------------------------------------------------------------------------------------------------------

_PARAM_RE = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_]*\s*=")


def _parse_value(text: str) -> Any:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _parse_params(text: str, spec: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ObjectiveError(f"objective {spec!r}: parameter {part.strip()!r} is not of the form key=value")
        key, value = part.split("=", 1)
        key = key.strip()
        if not key:
            raise ObjectiveError(f"objective {spec!r}: empty parameter name in {part.strip()!r}")
        if key in params:
            raise ObjectiveError(f"objective {spec!r}: parameter {key!r} given twice")
        params[key] = _parse_value(value)
    return params


def parse_spec(spec: str) -> tuple[str, list[str], dict[str, Any]]:
    """Split a spec into (kind, positional parts, params).

    ``"length:unit=words,lo=0.2"`` → ``("length", [], {"unit": "words", "lo": 0.2})``;
    ``"hf:lvwerra/distilbert-imdb:POSITIVE:lower=-4"`` → ``("hf", ["lvwerra/distilbert-imdb", "POSITIVE"], {...})``.
    The parameter block is the last colon-separated segment when it contains ``key=``.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ObjectiveError(f"objective name must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    kind, _, rest = spec.partition(":")
    kind = kind.strip()
    params: dict[str, Any] = {}
    if kind in ("hf", "py"):
        segments = rest.split(":") if rest else []
        if segments and _PARAM_RE.match(segments[-1]):
            params = _parse_params(segments.pop(), spec)
        return kind, [s.strip() for s in segments], params
    if rest.strip():
        params = _parse_params(rest, spec)
    return kind, [], params


def _bounds(params: dict[str, Any], lower: float, upper: float, spec: str) -> tuple[float, float]:
    lo = _num(params.pop("lower", lower), "lower", spec)
    hi = _num(params.pop("upper", upper), "upper", spec)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ObjectiveError(f"objective {spec!r}: bounds must be finite with lower < upper, got [{lo}, {hi}]")
    return lo, hi


def _num(value: Any, key: str, spec: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ObjectiveError(f"objective {spec!r}: parameter {key}={value!r} must be a number")
    return float(value)


def _check_unknown(params: dict[str, Any], accepted: Sequence[str], spec: str) -> None:
    unknown = sorted(set(params) - set(accepted) - {"lower", "upper"})
    if unknown:
        raise ObjectiveError(
            f"objective {spec!r}: unknown parameter(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(list(accepted) + ['lower', 'upper'])}"
        )



_lock = threading.Lock()  # one model load at a time (the relevance embedder, hf: models)
