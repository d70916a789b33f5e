"""The trainer's side: what a training run does with preferences (``make_conditioner(cfg, objectives)``). A plain run
does nothing; a conditioned one draws a preference per prompt group, feeds it to the policy (gates or prefix line) and
the value heads, and saves and checks the adapter's conditioning with each checkpoint."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..config import TrainConfig
from ..pareto import conditioned_grid
from ..preference import project
from .files import _read_gates, load_gates, read_conditioning, save_gates
from .gates import ConditioningError, attach_gates, preference, register_prefix
from .prefix import fit_prompt, prefix_text

GRID_NOISE = 0.02  # standard deviation of the noise added to a grid preference (preference_sampling: grid)

__all__ = ["GRID_NOISE", "Conditioner", "PreferenceConditioner", "make_conditioner"]


class Conditioner:
    """What a training run does with preferences. This base class is a plain run: nothing drawn, nothing fed."""

    conditioned = False

    def lora_rank(self, r: int) -> int:
        return r

    def value_inputs(self) -> int:
        """Extra inputs of the value heads (the preference)."""
        return 0

    def wrap(self, peft_model, model_spec: str | None = None):
        return peft_model

    def draw(self, step: int, groups: int, k: int, *, rank: int = 0, world: int = 1) -> torch.Tensor | None:
        """(groups·k, n) preferences of a rollout (the k samples of a prompt share one), or None."""
        return None

    def prompts(self, prompts: list[str], pref: torch.Tensor | None, tokenizer=None) -> list[str]:
        """The prompts as the policy reads them (``tokenizer``: to keep a preference line on a long prompt)."""
        return prompts

    def policy(self, model, pref: torch.Tensor | None):
        return contextlib.nullcontext()

    def metrics(self, pref: torch.Tensor | None) -> dict[str, float]:
        return {}

    def save(self, model, directory: Path) -> None:
        pass

    def check(self, directory: Path) -> None:
        """Raise unless the checkpoint's adapter folder holds what ``load`` needs (before anything is touched)."""

    def load(self, model, directory: Path) -> None:
        pass


class PreferenceConditioner(Conditioner):
    """A conditioned run: each prompt group draws its preference (Dirichlet or grid + noise, from (seed, step, rank)
    alone, so a resumed run draws what an uninterrupted one would), the policy and value heads receive it."""

    conditioned = True

    def __init__(self, cfg: TrainConfig, objectives: Sequence[str]):
        self.cfg = cfg
        self.form = cfg.conditioning
        self.objectives = list(objectives)
        self.n = len(self.objectives)

    def lora_rank(self, r: int) -> int:
        return r + self.n if self.form == "svd" else r

    def value_inputs(self) -> int:
        return self.n

    def wrap(self, peft_model, model_spec: str | None = None):
        if self.form == "svd":
            attach_gates(peft_model, self.n, objectives=self.objectives, model_spec=model_spec)
        else:
            register_prefix(peft_model, self.objectives, model_spec=model_spec)
        return peft_model

    def draw(self, step, groups, k, *, rank=0, world=1):
        rng = np.random.default_rng([int(self.cfg.seed), int(step), int(rank)])
        n = self.n
        if self.cfg.preference_sampling == "grid":
            grid = np.asarray(conditioned_grid(n))
            start = ((step - 1) * world + rank) * groups
            p = grid[(start + np.arange(groups)) % len(grid)] + rng.normal(0.0, GRID_NOISE, size=(groups, n))
        else:
            p = rng.dirichlet([self.cfg.preference_alpha] * n, size=groups)
        p = project(p)  # onto the simplex (pama.preference): the noise may leave it
        return torch.as_tensor(np.repeat(p, k, axis=0), dtype=torch.float32)

    def prompts(self, prompts, pref, tokenizer=None):
        if self.form != "prefix":
            return prompts
        return [fit_prompt(tokenizer, prefix_text(self.objectives, row), text)
                for row, text in zip(pref.tolist(), prompts)]

    def policy(self, model, pref):
        return preference(model, pref) if self.form == "svd" else contextlib.nullcontext()

    def metrics(self, pref):
        means = pref.mean(0).tolist()
        return {f"preference/{o}/mean": float(m) for o, m in zip(self.objectives, means)}

    def save(self, model, directory):
        save_gates(model, directory)

    def check(self, directory):
        info = read_conditioning(directory)
        if info is None or info["form"] != self.form or info["objectives"] != self.objectives:
            raise ConditioningError(f"{directory} holds no {self.form}-conditioned adapter for {self.objectives}")
        if self.form == "svd":
            _read_gates(Path(directory))

    def load(self, model, directory):
        load_gates(model, directory)


def make_conditioner(cfg: TrainConfig, objectives: Sequence[str]) -> Conditioner:
    """The run's conditioner: a :class:`PreferenceConditioner` when ``cfg.conditioned``, else the plain one."""
    return PreferenceConditioner(cfg, objectives) if cfg.conditioned else Conditioner()
