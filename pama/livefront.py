"""The front forming during training: a trainer callback that evaluates the policy every K steps.

A conditioned run is evaluated at the ends of the simplex and its middle (``evaluate_at_many``), a plain run at its own
point (``evaluate_point``), the base model once before the first step; always on the same few held-out prompts, the
same sampling seed and a short generation length, so that the points of different steps differ only by the policy.
Each evaluation is logged through the trainer (``Trainer.log``) as metrics ``live/<label>/<objective>/mean|low|high``
(``pama.plots.live_key``): the store keeps them with the run's other metrics, TensorBoard / MLflow show them too, and
the Runs and Train pages draw them (``pama.plots.live_front_figure``). Its cost: docs/performance.md ("Live front").
"""
from __future__ import annotations

import time

from . import adapters as adp
from .callbacks import StoreCallback, TrainerCallback
from .config import TrainConfig
from .evaluate import EVAL_TEMPERATURE, evaluate_at_many, evaluate_point
from .plots import LIVE_BASE, LIVE_POLICY, live_key
from .preference import Preference
from .prompts import load_prompts
from .trainer import rng_state, set_rng_state

LIVE_PROMPTS = "builtin:heldout"
LIVE_SEED = 4321


def live_preferences(n: int) -> list[Preference]:
    """The ends of the simplex (all weight on one objective) and its middle (uniform): for two objectives, (1, 0),
    (0.5, 0.5), (0, 1)."""
    ends = [Preference.parse([1.0 if j == i else 0.0 for j in range(n)], n) for i in range(n)]
    return [ends[0], Preference.uniform(n), *ends[1:]]


def preference_label(p: Preference) -> str:
    """A metric-name-safe label (no '/'): ``p=0.50,0.50``."""
    return "p=" + ",".join(f"{w:.2f}" for w in p.as_list())


def live_metrics(label: str, result) -> dict[str, float]:
    """One evaluation's per-objective means and 95% intervals (and mean length) as ``live/...`` metrics."""
    out = {}
    for name, (mean, low, high) in result.values.items():
        out.update({live_key(label, name, "mean"): mean, live_key(label, name, "low"): low,
                    live_key(label, name, "high"): high})
    out[f"live/{label}/length"] = result.mean_length
    return out


class LiveFrontCallback(TrainerCallback):
    """Every ``every`` steps (and at the last step) evaluate the policy on the first ``n_prompts`` held-out prompts;
    the base model once at step 0; nothing in a run of fewer than ``every`` steps. The trainer's RNG states are restored afterwards, so a run with the live front
    trains exactly as one without it. ``time/live_eval`` records each evaluation's seconds."""

    def __init__(self, every: int, *, n_prompts: int = 16, max_new_tokens: int = 32, prompts: str = LIVE_PROMPTS,
                 seed: int = LIVE_SEED, temperature: float = EVAL_TEMPERATURE, base: bool = True):
        if every <= 0:
            raise ValueError(f"every must be a positive number of steps, not {every}")
        self.every, self.n_prompts, self.max_new_tokens = int(every), int(n_prompts), int(max_new_tokens)
        self.source, self.seed, self.temperature, self.base = prompts, seed, temperature, base
        self.prompts: list[str] = []

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> "LiveFrontCallback | None":
        """The callback a config asks for (``live_eval_every``), or None when it is off."""
        if not cfg.live_eval_every:
            return None
        return cls(cfg.live_eval_every, n_prompts=cfg.live_eval_prompts, max_new_tokens=cfg.live_eval_max_new_tokens)

    def active(self, trainer) -> bool:
        """A run shorter than K steps is not evaluated at all (no trajectory to draw; a quick test run costs
        nothing)."""
        return trainer.cfg.steps >= self.every

    def on_train_begin(self, trainer):
        self.prompts = load_prompts(self.source, limit=self.n_prompts)
        if self.base and trainer.step == 0 and self.active(trainer):  # a resumed run has its base point already
            self._run(trainer, 0, base=True)

    def on_step_end(self, trainer, step, metrics):
        if self.active(trainer) and (step % self.every == 0 or step == trainer.cfg.steps):
            self._run(trainer, step)

    def _kwargs(self) -> dict:
        return dict(seed=self.seed, max_new_tokens=self.max_new_tokens, batch_size=len(self.prompts),
                    temperature=self.temperature, ref=None)

    def evaluate(self, trainer, *, base: bool = False) -> dict[str, float]:
        """The live metrics of the policy now (or of the base model: every adapter disabled)."""
        model = trainer.accelerator.unwrap_model(trainer.model)
        objectives = trainer.objectives
        if base:
            with adp.reference(model):
                return live_metrics(LIVE_BASE, evaluate_point(model, trainer.tokenizer, objectives, self.prompts,
                                                              **self._kwargs()))
        if trainer.cfg.conditioned:
            prefs = live_preferences(len(objectives))
            results = evaluate_at_many(model, trainer.tokenizer, objectives, self.prompts,
                                       [p.as_list() for p in prefs], **self._kwargs())
            out = {}
            for p, r in zip(prefs, results):
                out.update(live_metrics(preference_label(p), r))
            return out
        return live_metrics(LIVE_POLICY, evaluate_point(model, trainer.tokenizer, objectives, self.prompts,
                                                        **self._kwargs()))

    def _run(self, trainer, step: int, *, base: bool = False) -> None:
        state = rng_state()
        t0 = time.perf_counter()
        try:
            metrics = self.evaluate(trainer, base=base)
        finally:
            set_rng_state(state)
        metrics["time/live_eval"] = time.perf_counter() - t0
        trainer.log(step, metrics)


def run_callbacks(cfg: TrainConfig, store=None) -> list[TrainerCallback]:
    """The callbacks of a workflow's run: the store's writer (when given a store) and the live front (when the
    config asks for it). ``report_to``'s integrations the trainer adds itself."""
    out: list[TrainerCallback] = [StoreCallback(store)] if store is not None else []
    live = LiveFrontCallback.from_config(cfg)
    return out + ([live] if live is not None else [])
