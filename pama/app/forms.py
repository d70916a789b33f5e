"""The Train form's widget values → a validated ``TrainConfig`` (``SweepConfig`` for a grid), never touching the
store. Mistakes come back as ``ConfigError`` / ``UIError`` saying what to fix."""
from __future__ import annotations

import math
import warnings
from typing import Any, Mapping, Sequence

from ..config import SweepConfig, TrainConfig, from_dict
from .settings import UIError

SWEEP_ONLY = ("points", "eval_samples", "eval_prompts", "eval_max_new_tokens", "eval_seed")


MODES = ("one preference", "a sweep grid (a whole front)", "one conditioned adapter (whole front)")


def mode_is_sweep(mode: str) -> bool:
    """A grid and a conditioned adapter both run as a sweep (the conditioned one: one run, evaluated along the
    preference grid as points of kind ``conditioned``)."""
    return mode in MODES[1:]


def mode_is_conditioned(mode: str) -> bool:
    return mode == MODES[2]


def parse_floats(text: str, what: str = "preference") -> list[float]:
    """'0.3, 0.7' → [0.3, 0.7]; '' → []; anything else → UIError naming the bad entry."""
    out = []
    for part in (text or "").replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            v = float(part)
        except ValueError:
            raise UIError(f"{what}: {part!r} is not a number; write numbers separated by commas, e.g. 0.3, 0.7") \
                from None
        if not math.isfinite(v):
            raise UIError(f"{what}: {part!r} is not a finite number")
        out.append(v)
    return out


def split_objectives(chosen: Sequence[str], extra: str = "") -> list[str]:
    out = [c.strip() for c in chosen if c and c.strip()]
    # extra specs may hold commas inside parameters (length:target=20,unit=words), so they go one per line
    out += [line.strip() for line in (extra or "").splitlines() if line.strip()]
    return out


def build_train_config(form: Mapping[str, Any], *, sweep: bool = False):
    """Widget values → a validated TrainConfig (SweepConfig for a grid), or ConfigError / UIError saying what
    is wrong. ``py:`` objectives are refused (they would run code typed in a browser)."""
    data = {k: v for k, v in form.items() if v is not None}
    if isinstance(data.get("preference"), str):
        data["preference"] = parse_floats(data["preference"])
    cls = SweepConfig if sweep else TrainConfig
    if sweep:
        data.pop("preference", None)
    else:
        for k in SWEEP_ONLY:
            data.pop(k, None)
    cfg = from_dict(cls, data, source="form")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cfg.validate(allow_python=False)
