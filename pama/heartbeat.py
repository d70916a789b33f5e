"""How a training process shows it is alive: how often it writes its heartbeat, and how long a running run may stay
silent before the store marks it failed (``Store.mark_stale_failed``, ``pama.jobs``). Both come from the
environment ($PAMA_HEARTBEAT_S, $PAMA_HEARTBEAT_GRACE_S), read at each call; a bad value warns and the default holds.
"""
from __future__ import annotations

import math
import os
import warnings

DEFAULT_HEARTBEAT_S = 10.0
DEFAULT_HEARTBEAT_GRACE_S = 120.0


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        warnings.warn(f"{name}={raw!r} is not a positive number of seconds; using {default:g}", stacklevel=3)
        return default
    return value


def heartbeat_interval_s() -> float:
    """How often a training process writes its heartbeat ($PAMA_HEARTBEAT_S, default 10 s)."""
    return _env_seconds("PAMA_HEARTBEAT_S", DEFAULT_HEARTBEAT_S)


def heartbeat_grace_s() -> float:
    """How long a running run may stay silent before it is marked failed ($PAMA_HEARTBEAT_GRACE_S, default 120 s).

    Keep it several heartbeat intervals long: a run is only declared dead after missing a few heartbeats."""
    return _env_seconds("PAMA_HEARTBEAT_GRACE_S", DEFAULT_HEARTBEAT_GRACE_S)
