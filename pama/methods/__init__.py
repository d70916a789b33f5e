"""Training methods, one class per file behind ``pama.methods.base.Method``; ``create(cfg, preference)`` picks one."""
from __future__ import annotations

from ..config import TrainConfig
from ..preference import Preference
from .base import Method
from .mgda import Mgda, mgda_loss_weights
from .morlhf import Morlhf
from .pama import Pama
from .trl_grpo import TrlGrpo

METHODS: dict[str, type[Method]] = {m.name: m for m in (Pama, Morlhf, Mgda, TrlGrpo)}

__all__ = ["METHODS", "Method", "Mgda", "Morlhf", "Pama", "TrlGrpo", "create", "mgda_loss_weights"]


def create(cfg: TrainConfig, preference: Preference | None = None) -> Method:
    """The method object of ``cfg.method`` (config validation already refused unknown names) with the run's
    preference (default: the config's, made when the config was)."""
    return METHODS[cfg.method](cfg, cfg.normalised_preference() if preference is None else preference)
