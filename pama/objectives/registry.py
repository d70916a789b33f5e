"""The registry: an objective from its name (built-in, ``hf:``, ``py:``), the list of built-ins, and ``score_all``."""
from __future__ import annotations

import difflib
from typing import Any, Sequence

import numpy as np

from .builtin import _BUILTINS
from .hf import _make_hf
from .py import _make_py
from .spec import Objective, ObjectiveError, parse_spec


def available() -> list[str]:
    """Names of the built-in objectives (``hf:`` and ``py:`` specs are accepted by :func:`get` as well)."""
    return list(_BUILTINS)


def catalog() -> list[dict[str, Any]]:
    """One row per built-in: name, description, default bounds and parameters (for help screens)."""
    rows = []
    for name, (_, desc, defaults) in _BUILTINS.items():
        obj = get(name)
        rows.append(
            {"name": name, "description": desc, "lower": obj.lower, "upper": obj.upper, "params": dict(defaults)}
        )
    return rows





def get(name: str, *, allow_python: bool = True) -> Objective:
    """Build the objective named by ``name`` (see the module docstring for the syntax)."""
    kind, parts, params = parse_spec(name)
    spec = name.strip()
    if kind == "py":
        if not allow_python:
            raise ObjectiveError(
                f"objective {spec!r}: py: objectives run arbitrary Python code and are accepted only from config "
                "files and the command line, not here; use a built-in or hf: objective"
            )
        return _make_py(spec, parts, params)
    if kind == "hf":
        return _make_hf(spec, parts, params)
    if kind in _BUILTINS:
        return _BUILTINS[kind][0](spec, params)
    close = difflib.get_close_matches(kind, list(_BUILTINS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ObjectiveError(
        f"unknown objective {spec!r}{hint}; available: {', '.join(available())}, "
        "or hf:<model id or path>[:label], or py:<module>:<function>"
    )


def score_all(objectives: Sequence[Objective | str], prompts: Sequence[str] | None, responses: Sequence[str]) -> np.ndarray:
    """Score every objective on the batch → array (n_objectives, n_samples); validates count and finiteness."""
    objs = [get(o) if isinstance(o, str) else o for o in objectives]
    n = len(responses)
    out = np.zeros((len(objs), n), dtype=float)
    for k, obj in enumerate(objs):
        try:
            values = obj.score(prompts, responses)
        except ObjectiveError:
            raise
        except Exception as e:
            raise ObjectiveError(f"objective {obj.name!r} failed: {type(e).__name__}: {e}") from e
        try:
            arr = np.asarray(values, dtype=float).reshape(-1)
        except (TypeError, ValueError) as e:
            raise ObjectiveError(f"objective {obj.name!r} returned non-numeric values: {e}") from e
        if arr.shape[0] != n:
            raise ObjectiveError(f"objective {obj.name!r} returned {arr.shape[0]} scores for {n} responses")
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.argmax(bad))
            raise ObjectiveError(
                f"objective {obj.name!r} returned a non-finite score ({arr[i]}) for response {i} "
                f"({int(bad.sum())} of {n} non-finite)"
            )
        out[k] = arr
    return out

