"""Generation in the app: one shared model host per base model (adapters loaded on first use, a lock around adapter
switching and generation), comparison items (base / adapter / exact mixture) and the quick evaluation of a mixture
that the Pareto front page stores as a point."""
from __future__ import annotations

import contextlib
import threading
from typing import Mapping, Sequence

import streamlit as st

from .. import adapters
from .. import objectives as objmod
from ..controlled import control_sweep
from ..prompts import load_prompts
from .selection import objectives_of
from .settings import (GENERATION_MAX_NEW_TOKENS, GENERATION_TEMPERATURE, QUICK_PROMPTS, UIError, app_model_override,
                       default_model)


def item_weights(item: Mapping) -> dict[str, float]:
    """The adapter weights of a comparison item: {} for the base model, {run: 1} for an adapter, the mixture."""
    if item.get("kind") == "base":
        return {}
    if item.get("kind") == "adapter":
        if not item.get("run_id"):
            raise UIError(f"point {item.get('id')} has no training run, so there is no adapter to load")
        return {item["run_id"]: 1.0}
    if item.get("kind") == "mixture":
        return {k: float(v) for k, v in (item.get("mixture") or {}).items()}
    raise UIError(f"unknown point kind {item.get('kind')!r}")


def mixture_item(a: Mapping, b: Mapping, t: float) -> dict:
    """A comparison item for (1 - t)·A + t·B of two adapter points."""
    t = float(t)
    return dict(id=f"mix:{a['run_id']}:{b['run_id']}:{t:.2f}", kind="mixture", method=a.get("method"),
                model=a.get("model"), sweep_id=a.get("sweep_id"), values={},
                mixture={a["run_id"]: round(1.0 - t, 4), b["run_id"]: round(t, 4)},
                label=f"mix {a.get('label') or a['run_id']} ×{1 - t:.2f} + {b.get('label') or b['run_id']} ×{t:.2f}")


def model_for(item: Mapping, override: str | None = None) -> str:
    """The model a comparison item generates with: the sidebar's choice, PAMA_APP_MODEL, else the point's own."""
    return (override or "").strip() or app_model_override() or item.get("model") or default_model()


def score_text(prompt: str, text: str, objectives: Sequence[str]) -> dict:
    """{scores: {objective: score}, problems: [what could not be scored]} of one response."""
    scores: dict[str, float] = {}
    problems: list[str] = []
    for name in objectives:
        try:
            obj = objmod.get(name, allow_python=False)
            scores[name] = float(obj.score([prompt], [text])[0])
        except ValueError as err:
            problems.append(f"{name}: {err}")
    return dict(scores=scores, problems=problems)


class ModelHost:
    """One base model (and its tokenizer) with every adapter loaded so far; a lock serialises adapter switching and
    generation, since the object is shared by every browser session (``st.cache_resource``)."""

    def __init__(self, spec: str):
        self.spec = spec
        self.lock = threading.RLock()
        self.model = None
        self.tokenizer = None

    def _ensure(self):
        if self.model is None:
            from .. import models  # heavy: torch and transformers, loaded with the first generation

            self.model, self.tokenizer = models.load(self.spec)
        return self.model

    def _ensure_adapters(self, store, weights: Mapping[str, float]) -> None:
        have = set(adapters.adapter_names(self.model))
        need = adapters.run_adapters(store, [r for r in weights if r not in have])  # the CLI's checks too
        if need:
            self.model = adapters.load_adapters(self.model, need)

    @contextlib.contextmanager
    def use(self, store, item: Mapping):
        """Hold the lock with the model set to the item's base / adapter / mixture."""
        weights = item_weights(item)
        with self.lock:
            self._ensure()
            if weights:
                self._ensure_adapters(store, weights)
            with adapters.mixed(self.model, weights or None):
                yield self.model, self.tokenizer

    def generate(self, store, item: Mapping, prompt: str, *, objectives: Sequence[str] = (), seed: int = 0,
                 temperature: float = GENERATION_TEMPERATURE,
                 max_new_tokens: int = GENERATION_MAX_NEW_TOKENS) -> dict:
        """One response to ``prompt`` with the item's model, and its per-objective scores."""
        from .. import models  # heavy: torch

        with self.use(store, item) as (model, tok):
            text = models.generate(model, tok, [prompt], max_new_tokens=int(max_new_tokens),
                                   temperature=float(temperature), seed=int(seed))[0]
        return dict(text=text, **score_text(prompt, text, objectives))

    def evaluate(self, store, item: Mapping, objectives: Sequence[str], prompts: Sequence[str], *, seed: int = 1234,
                 max_new_tokens: int = 32):
        from .. import evaluate as ev  # heavy: torch

        objs = [objmod.get(name, allow_python=False) for name in objectives]
        with self.use(store, item) as (model, tok):
            return ev.evaluate_point(model, tok, objs, list(prompts), seed=seed, max_new_tokens=max_new_tokens)


@st.cache_resource(show_spinner=False)
def model_host(spec: str) -> ModelHost:
    """The host of ``spec``, shared by every session of this server."""
    return ModelHost(spec)


def host_for(item: Mapping, override: str | None = None) -> ModelHost:
    """The shared host of the model a comparison item generates with (``model_for``)."""
    return model_host(model_for(item, override))


class ConditionedHost:
    """One preference-conditioned run loaded once (``pama.conditioning.load_conditioned``), shared by every session;
    a lock serialises generation, and each call sets its own preference (``generate_at``): moving the slider never
    reloads anything."""

    def __init__(self, run_id: str, spec: str):
        self.run_id, self.spec = run_id, spec
        self.lock = threading.RLock()
        self.model = self.tokenizer = None
        self.objectives: list[str] = []
        self.loads = 0

    def _ensure(self, store):
        if self.model is None:
            from .. import conditioning as cond  # heavy: torch, transformers and peft

            try:
                self.model, self.tokenizer, self.objectives = cond.load_conditioned(self.run_id, store=store,
                                                                                    model=self.spec)
            except (KeyError, FileNotFoundError) as err:
                raise UIError(f"run {self.run_id} has no loadable conditioned adapter: {err}") from None
            self.loads += 1
        return self.model

    def generate_at(self, store, prompt: str, p: Sequence[float], *, seed: int = 0,
                    temperature: float = GENERATION_TEMPERATURE,
                    max_new_tokens: int = GENERATION_MAX_NEW_TOKENS) -> dict:
        """One response to ``prompt`` at preference ``p``, scored with the run's objectives."""
        from .. import conditioning as cond  # heavy: torch

        with self.lock:
            self._ensure(store)
            text = cond.generate_at(self.model, self.tokenizer, [prompt], list(p), max_new_tokens=int(max_new_tokens),
                                    temperature=float(temperature), seed=int(seed))[0]
            objectives = list(self.objectives)
        return dict(text=text, preference=list(p), **score_text(prompt, text, objectives))


@st.cache_resource(show_spinner=False)
def conditioned_host(run_id: str, spec: str) -> ConditionedHost:
    """The host of conditioned run ``run_id`` on base model ``spec``, shared by every session of this server."""
    return ConditionedHost(run_id, spec)


def conditioned_host_for(item: Mapping, override: str | None = None) -> ConditionedHost:
    """The shared host of a conditioned point / preference item (its run, on ``model_for``'s model)."""
    if not item.get("run_id"):
        raise UIError(f"point {item.get('id')} has no conditioned run to load")
    return conditioned_host(item["run_id"], model_for(item, override))


def generate_item(store, item: Mapping, prompt: str, *, objectives: Sequence[str] = (), override: str | None = None,
                  **kw) -> dict:
    """Compare's generation of any item: a conditioned point / preference item at its preference (scored with its
    run's objectives), else base / adapter / mixture on the shared model host."""
    if item.get("kind") == "conditioned":
        if not item.get("preference"):
            raise UIError(f"point {item.get('id')} has no preference to generate at")
        return conditioned_host_for(item, override).generate_at(store, prompt, item["preference"], **kw)
    return host_for(item, override).generate(store, item, prompt, objectives=objectives, **kw)


def evaluate_mixture(store, host: ModelHost, a: Mapping, b: Mapping, t: float, *, n_prompts: int = QUICK_PROMPTS,
                     max_new_tokens: int = 32, seed: int = 1234) -> str:
    """Evaluate (1 - t)·A + t·B on the first ``n_prompts`` held-out prompts and store it as a mixture point in A's
    sweep; returns the new point id."""
    from .. import evaluate as ev  # heavy: torch

    if a.get("kind") != "adapter" or b.get("kind") != "adapter":
        raise UIError("choose two trained adapters (not the base model or a mixture) to mix")
    if a["run_id"] == b["run_id"]:
        raise UIError("choose two different adapters to mix")
    objectives = [o for o in objectives_of([a]) if o in (b.get("values") or {})]
    if not objectives:
        raise UIError("the two adapters share no evaluated objective")
    item = mixture_item(a, b, t)
    result = host.evaluate(store, item, objectives, load_prompts("builtin:heldout", limit=n_prompts), seed=seed,
                           max_new_tokens=max_new_tokens)
    point_id = ev.store_point(store, result, kind="mixture", label=item["label"], model=host.spec,
                              sweep_id=a.get("sweep_id"), method=a.get("method"), mixture=item["mixture"],
                              extra_config=dict(source="app", quick=True))
    if a.get("sweep_id"):   # its length-controlled scores, along the front's fitted lines (pama.controlled)
        control_sweep(store, a["sweep_id"])
    return point_id
