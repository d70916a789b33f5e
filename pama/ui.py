"""Helpers shared by the Streamlit pages: cached store and model, pure "widget value → thing" functions.

The pure functions (selection → point ids, form → TrainConfig, safe deletion, exports, labels) are tested without a
Streamlit runtime; the cached accessors at the bottom import Streamlit lazily.
"""
from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import logging
import math
import os
import shutil
import threading
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from . import adapters, demo, jobs, jsonio, paths
from . import objectives as objmod
from . import votes as V
from .config import SweepConfig, TrainConfig, from_dict
from .prompts import load_prompts
from .store import Store

# what the app samples with unless told otherwise: the evaluation's default temperature (fluent text from a small
# model) and room for an answer to end on its own
GENERATION_TEMPERATURE = 0.7
GENERATION_MAX_NEW_TOKENS = 128

MAX_COMPARE = 4
BASE_ID = "base"          # the pseudo point id of "the base model" in pickers
READ_TTL_S = 3
QUICK_PROMPTS = 8         # held-out prompts per mixture evaluated from the app (quick on CPU)


class UIError(ValueError):
    """A user-facing problem; the message says what was wrong and what to do."""


# ------------------------------------------------------------------------------------------------ settings

def app_model_override() -> str | None:
    """``PAMA_APP_MODEL`` forces one model for every generation in the app (tests use tiny-random)."""
    return (os.environ.get("PAMA_APP_MODEL") or "").strip() or None


def default_model() -> str:
    from .models import DEFAULT_MODEL  # heavy: models imports torch, which the app's first page does not need

    return app_model_override() or DEFAULT_MODEL


def demo_enabled() -> bool:
    return os.environ.get("PAMA_NO_DEMO", "").lower() not in ("1", "true", "yes")


def import_demo(store) -> str | None:
    """Import the shipped demo front into an empty store (pama.demo); None when there is nothing to import."""
    try:
        out = demo.import_if_empty(store)
    except Exception as err:  # noqa: BLE001 - the home page must load even when the demo files are damaged
        logging.getLogger(__name__).warning("demo import failed: %s", err)
        return None
    if not out:
        return None
    return out if isinstance(out, str) else "demo front"


# ------------------------------------------------------------------------------------------------ selection

def _get(obj: Any, key: str, default=None):
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    try:
        return obj[key]
    except (KeyError, TypeError, IndexError):
        return getattr(obj, key, default)


def selected_point_ids(event: Any) -> list[str]:
    """A plotly selection event (``st.plotly_chart(on_select="rerun")``'s return value) → point ids, in click order,
    without duplicates. Each marker carries ``custom_data = [point id]``; lines and bands carry none."""
    selection = _get(event, "selection")
    points = _get(selection, "points") or []
    out: list[str] = []
    for p in points:
        cd = _get(p, "customdata")
        if cd is None:
            cd = _get(p, "custom_data")
        if isinstance(cd, (list, tuple)):
            cd = cd[0] if cd else None
        if isinstance(cd, str) and cd and cd not in out:
            out.append(cd)
    return out


def merge_selection(current: Sequence[str], clicked: Sequence[str], *, valid: Iterable[str] | None = None,
                    limit: int = MAX_COMPARE) -> list[str]:
    """The comparison set after a click: a new click replaces the plot's selection, kept to known ids and the limit.

    ``current`` is what the picker held; ``clicked`` the plot's selection (empty = keep ``current``)."""
    ids = list(clicked) if clicked else list(current)
    if valid is not None:
        ok = set(valid)
        ids = [i for i in ids if i in ok]
    seen: list[str] = []
    for i in ids:
        if i not in seen:
            seen.append(i)
    return seen[:limit]


# ------------------------------------------------------------------------------------------------ labels and tables

def point_label(point: Mapping, *, sweeps: Mapping[str, Mapping] | None = None) -> str:
    """Short human label for pickers: '<label> · <method> · <sweep name>'."""
    if point.get("id") == BASE_ID:
        return "base model"
    bits = [str(point.get("label") or point.get("id"))]
    if point.get("kind") == "base":
        bits = [f"base model ({point.get('label') or point.get('model')})"]
    sw = (sweeps or {}).get(point.get("sweep_id") or "")
    if sw:
        bits.append(str(sw.get("name")))
    return " · ".join(bits) + f"  [{point.get('id')}]"


def objectives_of(points: Sequence[Mapping], order: Sequence[str] = ()) -> list[str]:
    """Objectives in the sweeps' own order (the first is the x axis), then any others in first-seen order."""
    seen = {name for p in points for name in (p.get("values") or {})}
    out: list[str] = [name for name in order if name in seen]
    for p in points:
        for name in p.get("values") or {}:
            if name not in out:
                out.append(name)
    return out


def methods_of(points: Sequence[Mapping]) -> list[str]:
    return sorted({p.get("method") for p in points if p.get("method")})


def filter_points(points: Sequence[Mapping], *, sweep_ids: Iterable[str] | None = None,
                  methods: Iterable[str] | None = None, include_base: bool = True,
                  include_mixtures: bool = True) -> list[dict]:
    sweeps = set(sweep_ids) if sweep_ids is not None else None
    meths = set(methods) if methods is not None else None
    out = []
    for p in points:
        if sweeps is not None and p.get("sweep_id") not in sweeps:
            continue
        if p.get("kind") == "base":
            if include_base:
                out.append(dict(p))
            continue
        if p.get("kind") == "mixture" and not include_mixtures:
            continue
        if meths is not None and p.get("method") not in meths:
            continue
        out.append(dict(p))
    return out


def objective_bounds(names: Sequence[str], runs: Sequence[Mapping] = ()) -> dict[str, dict]:
    """{objective: {lower, upper, direction}} for normalised hypervolumes: from the runs' stored objectives first,
    then from built-in objectives (never loading a reward model; unknown → left out)."""
    out: dict[str, dict] = {}
    for run in runs:
        for o in run.get("objectives") or []:
            if o.get("name") in names and o["name"] not in out:
                out[o["name"]] = dict(lower=float(o["lower"]), upper=float(o["upper"]),
                                      direction=o.get("direction", "maximize"))
    for name in names:
        if name in out:
            continue
        try:
            kind, _, _ = objmod.parse_spec(name)
            if kind not in objmod.available():
                continue
            obj = objmod.get(name, allow_python=False)
        except ValueError:
            continue
        out[name] = dict(lower=obj.lower, upper=obj.upper, direction=obj.direction)
    return out


def runs_rows(runs: Sequence[Mapping], *, now: dt.datetime | None = None) -> list[dict]:
    """Rows for the runs table."""
    now = now or dt.datetime.now(dt.timezone.utc)
    rows = []
    for r in runs:
        created = r.get("created_at")
        rows.append({
            "id": r["id"], "name": r.get("name"), "status": r.get("status"), "method": r.get("method"),
            "model": r.get("model"), "step": f"{r.get('step') or 0}/{r.get('total_steps') or 0}",
            "created": created.strftime("%Y-%m-%d %H:%M") if isinstance(created, dt.datetime) else str(created),
            "sweep": r.get("sweep_id") or "", "error": (r.get("error") or "")[:120],
        })
    return rows


def filter_runs(runs: Sequence[Mapping], *, statuses: Iterable[str] | None = None,
                methods: Iterable[str] | None = None, text: str = "") -> list[dict]:
    st_ = set(statuses) if statuses else None
    me = set(methods) if methods else None
    text = (text or "").strip().lower()
    out = []
    for r in runs:
        if st_ is not None and r.get("status") not in st_:
            continue
        if me is not None and r.get("method") not in me:
            continue
        if text and text not in f"{r.get('id')} {r.get('name')} {r.get('model')}".lower():
            continue
        out.append(dict(r))
    return out


# ------------------------------------------------------------------------------------------------ exports

def metrics_csv(metrics: Sequence[Mapping]) -> str:
    """Long format: step,key,value."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["step", "key", "value"])
    for m in metrics:
        w.writerow([m["step"], m["key"], repr(float(m["value"]))])
    return buf.getvalue()


def run_json(store, run_id: str) -> str:
    """The run, its metrics and its evaluated points as one JSON document."""
    run = store.require_run(run_id)
    doc = dict(run=run, metrics=store.metrics(run_id), points=store.points(run_id=run_id))
    return jsonio.dumps(doc)


# ------------------------------------------------------------------------------------------------ deleting

def deletable_paths(run: Mapping, *, root: Path | None = None) -> list[Path]:
    """Folders to remove with a run: its run folder and adapter folder, only when inside the checkpoints root
    (never the root itself, never the shipped demo folder, never anything outside)."""
    root = (root or paths.home()).resolve()
    demo = (paths.REPO / "demo").resolve()
    cands = [paths.run_dir(run["id"]) if root == paths.home().resolve() else root / "runs" / run["id"]]
    ap = run.get("adapter_path")
    if ap:
        p = Path(ap)
        # <run folder>/step-N/adapter: remove the run folder; a stand-alone adapter folder: remove it
        cands.append(p.parent.parent if p.name == "adapter" and p.parent.name.startswith("step-") else p)
    out: list[Path] = []
    for c in cands:
        try:
            c = c.resolve()
        except OSError:
            continue
        if c == root or root not in c.parents:
            continue
        if c == demo or demo in c.parents:
            continue
        if c.exists() and c not in out and not any(o in c.parents for o in out):
            out.append(c)
    return out


def delete_run(store, run_id: str) -> list[str]:
    """Delete the run from the store, then its folders (see ``deletable_paths``) and its job log; returns the
    removed paths. A running run must be cancelled first."""
    run = store.get_run(run_id)
    if run is None:
        raise UIError(f"No run {run_id!r} (already deleted?). Refresh the list.")
    if run["status"] in jobs.ACTIVE and jobs.pid_alive(jobs.local_pid(run)):
        raise UIError(f"Run {run_id} is still {run['status']}: cancel it first, then delete it.")
    victims = deletable_paths(run)
    store.delete_run(run_id)
    removed = []
    for p in victims:
        shutil.rmtree(p, ignore_errors=True)
        removed.append(str(p))
    for f in (jobs.log_path(run_id), jobs.job_file(run_id)):
        with contextlib.suppress(OSError):
            f.unlink()
    return removed


# ------------------------------------------------------------------------------------------------ the train form

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
    for line in (extra or "").splitlines():
        if line.strip():
            out.append(line.strip())
    return out


def build_train_config(form: Mapping[str, Any], *, sweep: bool = False):
    """Widget values → a validated TrainConfig (SweepConfig for a grid), or ConfigError / UIError saying what
    is wrong. Never touches the store. ``py:`` objectives are refused (they would run code typed in a browser)."""
    data = {k: v for k, v in form.items() if v is not None}
    if isinstance(data.get("preference"), str):
        data["preference"] = parse_floats(data["preference"])
    cls = SweepConfig if sweep else TrainConfig
    if sweep:
        data.pop("preference", None)
    else:
        for k in ("points", "eval_samples", "eval_prompts", "eval_max_new_tokens", "eval_seed"):
            data.pop(k, None)
    cfg = from_dict(cls, data, source="form")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cfg.validate(allow_python=False)


# ------------------------------------------------------------------------------------------------ generation

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
            from . import models  # heavy: torch and transformers, loaded with the first generation

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
                with adapters.mixed(self.model, weights):
                    yield self.model, self.tokenizer
            else:
                with adapters.mixed(self.model, None):
                    yield self.model, self.tokenizer

    def generate(self, store, item: Mapping, prompt: str, *, objectives: Sequence[str] = (), seed: int = 0,
                 temperature: float = GENERATION_TEMPERATURE,
                 max_new_tokens: int = GENERATION_MAX_NEW_TOKENS) -> dict:
        """One response to ``prompt`` with the item's model, and its per-objective scores."""
        from . import models  # heavy: torch

        with self.use(store, item) as (model, tok):
            text = models.generate(model, tok, [prompt], max_new_tokens=int(max_new_tokens),
                                   temperature=float(temperature), seed=int(seed))[0]
        scores: dict[str, float] = {}
        problems: list[str] = []
        for name in objectives:
            try:
                obj = objmod.get(name, allow_python=False)
                scores[name] = float(obj.score([prompt], [text])[0])
            except ValueError as err:
                problems.append(f"{name}: {err}")
        return dict(text=text, scores=scores, problems=problems)

    def evaluate(self, store, item: Mapping, objectives: Sequence[str], prompts: Sequence[str], *, seed: int = 1234,
                 max_new_tokens: int = 32):
        from . import evaluate as ev  # heavy: torch

        objs = []
        for name in objectives:
            objs.append(objmod.get(name, allow_python=False))
        with self.use(store, item) as (model, tok):
            return ev.evaluate_point(model, tok, objs, list(prompts), seed=seed, max_new_tokens=max_new_tokens)


def evaluate_mixture(store, host: ModelHost, a: Mapping, b: Mapping, t: float, *, n_prompts: int = QUICK_PROMPTS,
                     max_new_tokens: int = 32, seed: int = 1234) -> str:
    """Evaluate (1 - t)·A + t·B on the first ``n_prompts`` held-out prompts and store it as a mixture point in A's
    sweep; returns the new point id."""
    from . import evaluate as ev  # heavy: torch

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
    return ev.store_point(store, result, kind="mixture", label=item["label"], model=host.spec,
                          sweep_id=a.get("sweep_id"), method=a.get("method"), mixture=item["mixture"],
                          extra_config=dict(source="app", quick=True))


# ------------------------------------------------------------------------------------------------ blind votes

VOTE_BUTTONS = (("a", "A is better", "A"), ("b", "B is better", "B"), ("tie", "Tie", "T"),
                ("both_bad", "Both bad", "X"))     # (choice, button label, keyboard shortcut)


def blind_scope(points: Sequence[Mapping], sweep_id: str | None, picked: Iterable[str] | None = None) -> list[dict]:
    """The points a blind session draws from: the sweep's (or every point when ``sweep_id`` is None), kept to
    ``picked`` when the person narrowed the set."""
    pts = [dict(p) for p in points if sweep_id is None or p.get("sweep_id") == sweep_id]
    if picked is not None:
        keep = set(picked)
        pts = [p for p in pts if p["id"] in keep]
    return pts


def fill_ballot(store, ballot: dict, by_id: Mapping[str, Mapping], *, app_model: str | None = None,
                temperature: float = GENERATION_TEMPERATURE, max_new_tokens: int = GENERATION_MAX_NEW_TOKENS,
                seed: int = 0) -> dict:
    """Generate the responses a ballot lacks (no stored response for its prompt), each with its point's model,
    the same seed for both; returns the ballot with ``text_a`` / ``text_b`` filled."""
    out = dict(ballot)
    for side in ("a", "b"):
        if out.get(f"text_{side}") is None:
            item = by_id[out[f"point_{side}"]]
            host = model_host(model_for(item, app_model))
            res = host.generate(store, item, out["prompt"], seed=seed, temperature=temperature,
                                max_new_tokens=max_new_tokens)
            out[f"text_{side}"] = res["text"]
    return out


def submit_vote(store, ballot: Mapping, choice: str, voter: str | None = None) -> dict:
    """Store a ballot's vote ({id, duplicate}); ``store.VoteRefused`` when a point was deleted meanwhile."""
    return store.add_vote(token=ballot["token"], point_a=ballot["point_a"], point_b=ballot["point_b"],
                          prompt=ballot["prompt"], text_a=ballot["text_a"] or "", text_b=ballot["text_b"] or "",
                          vote=choice, voter=voter, sweep_id=ballot.get("sweep_id"),
                          prompt_index=ballot.get("prompt_index"), source=ballot.get("source"))


def vote_table(points: Sequence[Mapping], score: Mapping[str, Mapping], *,
               sweeps: Mapping[str, Mapping] | None = None) -> list[dict]:
    """Rows for the scores table: best score first, points without votes last."""
    rows = []
    for p in points:
        s = score.get(p["id"]) or {}
        rows.append({
            "point": point_label(p, sweeps=sweeps), "votes": s.get("votes", 0),
            "W-L-T": f"{s.get('wins', 0)}-{s.get('losses', 0)}-{s.get('ties', 0)}", "both bad": s.get("both_bad", 0),
            "win rate": None if s.get("win_rate") is None else round(s["win_rate"], 3),
            "BT score": None if s.get("score") is None else round(s["score"], 3),
            "95% interval": "" if s.get("low") is None else f"[{s['low']:+.2f}, {s['high']:+.2f}]",
        })
    rows.sort(key=lambda r: (r["BT score"] is None, -(r["BT score"] or 0)))
    return rows


# ------------------------------------------------------------------------------------------------ Streamlit glue

import streamlit as st  # noqa: E402  (the pure helpers above do not need it)


def st_store():
    """The store for the current PAMA_DB_URL / PAMA_HOME, shared by sessions (``st.cache_resource``)."""
    return _cached_store(paths.default_db_url())


@st.cache_resource(show_spinner=False)
def _cached_store(url: str):
    return Store(url)


@st.cache_resource(show_spinner=False)
def model_host(spec: str) -> ModelHost:
    return ModelHost(spec)


def clear_reads() -> None:
    st.cache_data.clear()


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _read(name: str, url: str, args: tuple, kwargs: tuple):
    return getattr(_cached_store(url), name)(*args, **dict(kwargs))


def cached(name: str, *args, **kwargs):
    """A read of the current store through ``st.cache_data(ttl=READ_TTL_S)``: ``cached('points', sweep_id=...)``."""
    return _read(name, paths.default_db_url(), tuple(args), tuple(sorted(kwargs.items())))


@st.cache_data(show_spinner=False, max_entries=64)
def vote_scores(votes: list[dict]) -> dict[str, dict]:
    """Bradley–Terry scores of a list of votes (``pama.votes.scores``), cached on the votes themselves."""
    return V.scores(votes)
