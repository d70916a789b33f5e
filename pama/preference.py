"""One preference: the weights a run, an evaluation or a generation puts on its objectives (docs/ARCHITECTURE.md,
"Preferences").

A boundary (the Train form, the CLI, YAML / stored configs, the library API) makes a :class:`Preference` once with
:meth:`Preference.parse`, or a batch of them with :func:`rows`; everything below takes it as it is and never parses,
checks or normalises it again. This module is the only place that does (``tests/test_preference.py`` greps for others).

The policy, stated once:

- a preference is one number per objective, each finite and ≥ 0, at least one of them positive; anything else is
  refused with a :class:`PreferenceError` that says what was wrong and what to write instead;
- weights that do not sum to 1 (beyond ``SUM_TOL``) are divided by their sum, with a :class:`PreferenceWarning` naming
  the weights used; weights that do are kept exactly as given.

Below the config layer (``pama.config`` makes one from every config), so it imports nothing of pama's; torch is
imported only by the tensor forms.
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

__all__ = ["SUM_TOL", "Preference", "PreferenceError", "PreferenceWarning", "parse_weights", "rows", "project"]

SUM_TOL = 1e-6  # a sum within this of 1 is a preference as given (stored configs, grids, float32 rows)
_SEPARATORS = re.compile(r"[,;\s]+")  # "0.3, 0.7", "0.3;0.7", "0.3 0.7"


class PreferenceError(ValueError):
    """A preference cannot be used as given; the message says what was wrong and what to write instead."""


class PreferenceWarning(UserWarning):
    """Weights that did not sum to 1 were divided by their sum (the message names the weights used)."""


def _example(n: int) -> str:
    return ", ".join([f"{1 / n:.2g}"] * n) if n > 0 else "0.3, 0.7"


def _names(objectives: Sequence[str]) -> str:
    return f" ({', '.join(objectives)})" if objectives else ""


def parse_weights(value: Any, *, what: str = "preference") -> tuple[float, ...]:
    """Text (``"0.3, 0.7"``, ``"0.3;0.7"``, ``"[0.3 0.7]"``), a list / tuple / array of numbers, a YAML list or a
    single number → the weights as floats, each finite and ≥ 0. No length or sum check (:meth:`Preference.parse`
    does those); ``None``, ``""`` and ``[]`` give ``()``. Raises PreferenceError naming the bad entry."""
    if value is None:
        return ()
    if isinstance(value, Preference):
        return value.weights
    if isinstance(value, str):
        items: list = [t for t in _SEPARATORS.split(value.strip().strip("[]()")) if t]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        items = [value]  # YAML `preference: 1` (one objective)
    else:
        try:
            items = list(value.tolist() if hasattr(value, "tolist") else value)  # arrays, tensors, lists, tuples
        except TypeError:
            raise PreferenceError(f"{what} must be numbers separated by commas or a list of numbers, e.g. 0.3, 0.7; "
                                  f"got {type(value).__name__}") from None
    out = []
    for item in items:
        try:
            if isinstance(item, (bool, list, tuple, dict)):
                raise TypeError
            v = float(item)
        except (TypeError, ValueError):
            raise PreferenceError(f"{what}: {item!r} is not a number; write one weight per objective, separated by "
                                  "commas, e.g. 0.3, 0.7") from None
        if not math.isfinite(v):
            raise PreferenceError(f"{what}: {item!r} is not a finite number; weights must be finite and "
                                  "non-negative, e.g. 0.3, 0.7")
        if v < 0:
            raise PreferenceError(f"{what}: {item!r} is negative; weights must be finite and non-negative, e.g. "
                                  "0.3, 0.7")
        out.append(v)
    return tuple(out)


def _checked(weights: tuple[float, ...], n: int, objectives: Sequence[str],
             what: str) -> tuple[tuple[float, ...], bool]:
    """The policy on parsed weights: (weights on the simplex, whether they were divided by their sum)."""
    if not weights:
        raise PreferenceError(f"{what} is empty; give one weight per objective{_names(objectives)}, e.g. "
                              f"{_example(n)}")
    if len(weights) != n:
        raise PreferenceError(f"{what} has {len(weights)} entries but there are {n} objectives{_names(objectives)}; "
                              f"give one weight per objective, e.g. {_example(n)}")
    total = math.fsum(weights)
    if total <= 0:
        raise PreferenceError(f"{what} needs a positive entry (all weights are 0); e.g. {_example(n)}")
    if abs(total - 1.0) > SUM_TOL:
        return tuple(w / total for w in weights), True
    return weights, False


@dataclass(frozen=True)
class Preference:
    """Weights on the objectives: finite, ≥ 0, summing to 1 (within ``SUM_TOL``). Immutable and hashable.

    Make one with :meth:`parse` (any input, normalised by the policy above) or :meth:`uniform`; the constructor takes
    weights that are a preference already and refuses others (use ``parse`` to normalise)."""

    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        w = parse_weights(self.weights)
        checked, changed = _checked(w, len(w), (), "preference")
        if changed:
            raise PreferenceError(f"preference {list(w)} does not sum to 1; use Preference.parse to normalise it")
        object.__setattr__(self, "weights", checked)

    # -- making one -----------------------------------------------------------------------------------------------
    @classmethod
    def parse(cls, value: Any, n: int | None = None, *, objectives: Sequence[str] = (),
              what: str = "preference") -> "Preference":
        """Text, a list / tuple / array, a YAML value or a Preference → a Preference over ``n`` objectives (default:
        ``len(objectives)``, else as many as given). Weights not summing to 1 are normalised with a
        PreferenceWarning; anything else wrong raises PreferenceError."""
        if isinstance(value, Preference) and (n is None or len(value) == n):
            return value
        w = parse_weights(value, what=what)
        n = n if n is not None else (len(objectives) or len(w))
        checked, changed = _checked(w, n, objectives, what)
        if changed:
            warnings.warn(f"{what} {list(w)} does not sum to 1; using {[round(x, 4) for x in checked]}",
                          PreferenceWarning, stacklevel=2)
        return cls(checked)

    @classmethod
    def uniform(cls, n: int) -> "Preference":
        """1/n on each of ``n`` objectives (a run's default)."""
        if n < 1:
            raise PreferenceError("a preference needs at least one objective")
        return cls(tuple([1.0 / n] * n))

    # -- reading it -----------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.weights)

    def __iter__(self) -> Iterator[float]:
        return iter(self.weights)

    def __getitem__(self, i: int) -> float:
        return self.weights[i]

    def as_list(self) -> list[float]:
        """The weights as a plain list (what configs, JSON and the store hold)."""
        return list(self.weights)

    def label(self, objectives: Sequence[str] | None = None, *, digits: int = 2) -> str:
        """``(0.30, 0.70)``, or with objective names ``informativeness 0.30, conciseness 0.70``."""
        if objectives:
            return ", ".join(f"{o} {w:.{digits}f}" for o, w in zip(objectives, self.weights))
        return "(" + ", ".join(f"{w:.{digits}f}" for w in self.weights) + ")"

    def tensor(self, rows: int | None = None, *, dtype=None, device=None):
        """The weights as a torch tensor: shape (n,), or (rows, n) with the same preference on every row."""
        import torch  # heavy: only the tensor forms need it (this module sits below the config layer)

        t = torch.tensor(self.weights, dtype=dtype or torch.float32, device=device)
        return t if rows is None else t.unsqueeze(0).expand(rows, -1).clone()


def rows(value: Any, n: int, *, objectives: Sequence[str] = (), what: str = "preference", dtype=None):
    """Many preferences as a torch tensor (rows, n): from a Preference (one row), a sequence of Preferences, or
    anything array-like of shape (n,) or (rows, n). Each row follows the policy above (one PreferenceWarning for the
    rows that were normalised); a wrong shape or a bad row raises PreferenceError."""
    import torch  # heavy: only the tensor forms need it

    dtype = dtype or torch.float32
    if isinstance(value, Preference):
        value = [value]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Preference) for v in value):
        bad = next((p for p in value if len(p) != n), None)
        if bad is not None:
            _checked(bad.weights, n, objectives, what)  # raises the length message
        return torch.tensor([p.weights for p in value], dtype=dtype)
    if isinstance(value, str):
        table: list = [list(parse_weights(value, what=what))]
    else:
        try:
            t = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
        except (TypeError, ValueError, RuntimeError):
            raise PreferenceError(f"{what} must be {n} non-negative numbers, one per objective{_names(objectives)}, "
                                  f"e.g. {_example(n)}; got {value!r:.80}") from None
        if t.dim() > 2 or t.dim() == 0:
            raise PreferenceError(f"{what} must have shape (n,) or (rows, n) with n = {n} objectives"
                                  f"{_names(objectives)}, got shape {tuple(t.shape)}")
        table = (t.unsqueeze(0) if t.dim() == 1 else t).tolist()
    if not table:
        raise PreferenceError(f"{what} has no rows; give one weight per objective{_names(objectives)}, e.g. "
                              f"{_example(n)}")
    out, changed = [], 0
    for row in table:
        w, c = _checked(parse_weights(row, what=what), n, objectives, what)
        out.append(w)
        changed += c
    if changed and len(out) == 1:  # one preference: the message Preference.parse gives
        warnings.warn(f"{what} {table[0]} does not sum to 1; using {[round(x, 4) for x in out[0]]}",
                      PreferenceWarning, stacklevel=2)
    elif changed:
        warnings.warn(f"{changed} of {len(out)} {what} rows did not sum to 1; each was divided by its sum",
                      PreferenceWarning, stacklevel=2)
    return torch.tensor(out, dtype=dtype)


def project(draws):
    """Random draws (a numpy array (rows, n): a Dirichlet, or a grid point plus noise) onto the simplex: negative
    and NaN entries become 0, each row is divided by its sum, an all-zero row becomes uniform. This is how a
    conditioned run makes its own preferences (no user input, so no warning); returns a new array."""
    p = draws.astype("float64", copy=True)
    p[~(p >= 0)] = 0.0  # NaN compares false: it goes too
    total = p.sum(axis=1, keepdims=True)
    empty = total[:, 0] <= 0
    p[empty] = 1.0
    total[empty] = p.shape[1]
    return p / total
