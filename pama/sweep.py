"""Preference sweeps and Pareto fronts.

A sweep trains one adapter per preference of an even simplex grid (any method), evaluates every trained adapter and
the base model on the same held-out prompts with the same sampling seeds, and records the front and its hypervolume
in the store. It is resumable: ``run_sweep(..., sweep_id=ID)`` (``python -m pama sweep --resume ID``) skips the
preferences that are trained and evaluated, resumes unfinished runs from their checkpoints and evaluates what is
missing; resuming a complete sweep changes nothing.

A conditioned sweep (``SweepConfig.conditioned``, ``python -m pama sweep --conditioned``) trains ONE preference-
conditioned run with the sweep's budget instead, then evaluates it at ``pareto.conditioned_grid`` (11 preferences for
two objectives) with the same eval config; each is a point of kind ``conditioned`` (docs/conditioned.md).

``front(store, sweep_id, mixtures=K)`` adds K exact mixtures (see :mod:`pama.adapters`) between each pair of
neighbouring trained adapters on the front (neighbours along the first objective) and returns the front table.

The front table itself (``summarise``, ``front_table``, ``format_table``, the hypervolume's reference) is in
:mod:`pama.fronts`, which reads a stored front without importing the trainer.
"""
from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np
from tqdm.auto import tqdm

from . import adapters as adp
from . import conditioning as cond
from . import models, pareto
from .config import ConfigError, SweepConfig, TrainConfig, from_dict
from .controlled import SUMMARY_KEY as LENGTH_CONTROL, control_sweep
from .evaluate import (EVAL_BATCH, Rounds, ends_apart, eval_rows, evaluate_at, evaluate_at_many, evaluate_in_rounds,
                       evaluate_point, store_point)
from .fronts import bounds, front_table, matrix, mixture_key, pref_label, summarise
from .pareto import conditioned_grid, preference_grid
from .prompts import load_prompts
from .procs import release_memory
from .runs import default_sweep_name
from .store import Store, StoreError
from .livefront import run_callbacks
from .trainer import RunCancelled, resume, train

GENERATIONS_KEPT = None  # every evaluated generation is stored (64 short rows per point); exports sample them


def _train_config(cfg: SweepConfig, preference: list[float]) -> TrainConfig:
    """The sweep's run template at one grid point's preference (unnamed: each run gets its default name)."""
    return dataclasses.replace(cfg.run, preference=list(preference), name="")


def _same_pref(a, b) -> bool:
    return a is not None and b is not None and len(a) == len(b) and np.allclose(a, b, atol=1e-6)


def sweep_config(store: Store, sweep_id: str) -> tuple[dict, SweepConfig]:
    sweep = store.get_sweep(sweep_id)
    if sweep is None:
        raise StoreError(f"No sweep with id '{sweep_id}' in {store.url}. `python -m pama front` lists them.")
    config = dict(sweep["config"])
    config.setdefault("eval_temperature", 0.7)  # sweeps stored before the option were evaluated at 0.7
    return sweep, from_dict(SweepConfig, config, source=f"sweep {sweep_id}", stored=True)


def _run_for(runs: list[dict], pref) -> dict | None:
    for r in runs:
        if _same_pref(r["config"].get("preference"), pref):
            return r
    return None


def training_grid(cfg: SweepConfig) -> list[list[float]]:
    """The preferences a sweep trains one run for: the simplex grid, or one run (the uniform preference as its
    default) for a conditioned sweep."""
    n = len(cfg.objectives)
    return [[1.0 / n] * n] if cfg.conditioned else preference_grid(n, cfg.points)


def _log(msg: str, progress: bool) -> None:
    if progress:
        tqdm.write(msg, file=sys.stderr)


# ---------------------------------------------------------------------------------------------------------------------
# sweeps

def run_sweep(cfg: SweepConfig | None, store: Store, *, progress: bool = True, sweep_id: str | None = None,
              name: str | None = None, point: int | None = None) -> str:
    """Train (or resume) one adapter per grid preference, evaluate them and the base, record the front.

    ``point`` (with ``sweep_id``): train (or resume) grid point ``point`` only and return: the queue's point job, one
    of several that workers run at once (pama.jobs); the sweep's evaluation job then evaluates them all."""

    if sweep_id is not None:
        sweep, cfg = sweep_config(store, sweep_id)
        store.mark_stale_failed()
    else:
        if cfg is None:
            raise ConfigError("run_sweep needs a SweepConfig or a sweep id to resume")
        cfg.validate()  # refuses a preference: the grid sets each run's (_train_config)
        for f in ("points", "eval_samples", "eval_max_new_tokens"):
            if getattr(cfg, f) <= 0:
                raise ConfigError(f"{f} must be a positive integer, not {getattr(cfg, f)}")
        sweep_id = store.create_sweep(
            name=name or cfg.name or default_sweep_name(cfg.to_dict()),
            method=cfg.method, model=cfg.model, objectives=list(cfg.objectives), config=cfg.to_dict())
    grid = training_grid(cfg)
    if point is not None and not 0 <= point < len(grid):
        raise ConfigError(f"sweep {sweep_id} has points 0 to {len(grid) - 1}, not {point}")
    _log(f"sweep {sweep_id}: " + (f"one conditioned {cfg.conditioning} run, {cfg.steps} steps, evaluated at "
                                  f"{len(conditioned_grid(len(cfg.objectives), cfg.points))} preferences"
                                  if cfg.conditioned else
                                  f"{len(grid)} preferences, {cfg.method}, {cfg.steps} steps each"), progress)
    store.update_sweep(sweep_id, status="running")
    try:
        for i, pref in enumerate(grid, 1):
            if point is not None and i - 1 != point:
                continue
            run = _run_for(store.list_runs(sweep_id=sweep_id), pref)
            if run is not None and run["status"] == "finished" and run["adapter_path"]:
                _log(f"[{i}/{len(grid)}] preference {pref_label(pref)}: trained ({run['id']})", progress)
                continue
            if run is not None:
                _log(f"[{i}/{len(grid)}] preference {pref_label(pref)}: resuming {run['id']} at step {run['step']}",
                     progress)
                resume(run["id"], store, progress=progress, callbacks=lambda c: run_callbacks(c, store))
            else:
                _log(f"[{i}/{len(grid)}] preference {pref_label(pref)}: training", progress)
                run_cfg = _train_config(cfg, pref)
                train(run_cfg, sweep_id=sweep_id, progress=progress, callbacks=run_callbacks(run_cfg, store))
        if point is not None:
            return sweep_id
        release_memory()  # the training's freed activations go back to the kernel before the evaluation loads
        evaluate_sweep(store, sweep_id, progress=progress)
        control_sweep(store, sweep_id)   # length-controlled scores (pama.controlled), kept by summarise
        summary = summarise(store, sweep_id)
        store.update_sweep(sweep_id, status="finished", summary=summary)
    except (RunCancelled, KeyboardInterrupt):
        store.update_sweep(sweep_id, status="cancelled")
        raise
    except Exception:
        store.update_sweep(sweep_id, status="failed")
        raise
    return sweep_id


class _Evaluator:
    """One base model for a whole sweep's evaluations; adapters are loaded into it on demand and mixed exactly."""

    def __init__(self, cfg: SweepConfig, progress: bool):
        self.cfg = cfg
        self.progress = progress
        prompts = load_prompts(cfg.eval_prompts)
        if cfg.eval_samples < len(prompts):
            prompts = prompts[:cfg.eval_samples]
        self.prompts = prompts
        self.model, self.tok = models.load(cfg.model, seed=cfg.seed)

    def ensure(self, adapters: dict[str, str]) -> None:
        missing = {k: v for k, v in adapters.items() if k not in adp.adapter_names(self.model)}
        if missing:
            self.model = adp.load_adapters(self.model, missing)
            for name, path in missing.items():  # a conditioned adapter's gates (or prefix form) and objectives
                cond.load_gates(self.model, path, adapter=name)

    def evaluate(self, weights: dict[str, float] | None, desc: str, *, preference=None, on_progress=None,
                 prompts=None, first_batch: int = 0):
        """The base (no weights), an adapter or a mixture; a conditioned adapter ({run: 1}) at ``preference``.
        ``prompts``/``first_batch``: a slice of the sweep's prompts and the index of its first batch (rounds)."""
        if weights:
            adp.mix(self.model, weights)
        else:
            adp.use_base(self.model)
        cfg = self.cfg
        prompts = self.prompts if prompts is None else prompts
        kw = dict(seed=cfg.eval_seed, max_new_tokens=cfg.eval_max_new_tokens, batch_size=EVAL_BATCH,
                  temperature=cfg.eval_temperature, progress=self.progress, desc=desc, on_progress=on_progress,
                  first_batch=first_batch)
        if preference is not None:
            return evaluate_at(self.model, self.tok, cfg.objectives, prompts, preference,
                               adapter=next(iter(weights)), **kw)
        return evaluate_point(self.model, self.tok, cfg.objectives, prompts, **kw)

    def evaluate_many(self, run_id: str, preferences: list[list[float]], desc: str, *, on_progress=None,
                      prompts=None, first_batch: int = 0):
        """A conditioned adapter at several preferences together (``evaluate_at_many``: the rows of different
        preferences in one decode batch, each (preference, prompt) with the seed it has one at a time)."""
        adp.mix(self.model, {run_id: 1.0})
        cfg = self.cfg
        return evaluate_at_many(self.model, self.tok, cfg.objectives, self.prompts if prompts is None else prompts,
                                preferences, adapter=run_id, seed=cfg.eval_seed,
                                max_new_tokens=cfg.eval_max_new_tokens, batch_size=EVAL_BATCH,
                                temperature=cfg.eval_temperature, progress=self.progress, desc=desc,
                                on_progress=on_progress, first_batch=first_batch)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    m, s = divmod(max(0, int(round(seconds))), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s" if m else f"{s} s"


class EvalProgress:
    """A sweep's evaluation progress: points done of total, prompts done for the point(s) now evaluated (a conditioned
    adapter's preferences go several at a time), elapsed time and an ETA (the prompt-evaluations still to do at the
    mean rate so far). Each update prints one line (always: the app starts sweeps with --quiet, and this is what
    their log shows) and writes ``summary["evaluation"]`` of the sweep row, which ``pama.jobs.sweep_progress`` reads
    for the Train and Runs pages, as training reports its step in the run row."""

    def __init__(self, store: Store, sweep_id: str, points_total: int, prompts: int):
        self.store, self.sweep_id = store, sweep_id
        self.points_total, self.prompts = int(points_total), int(prompts)
        self.points_done, self.prompts_done, self.group, self.current = 0, 0, 1, ""
        self.started = time.time()

    def state(self, now: float | None = None) -> dict:
        now = time.time() if now is None else now
        elapsed = now - self.started
        done = self.points_done * self.prompts + self.group * self.prompts_done
        left = self.points_total * self.prompts - done
        eta = elapsed / done * left if done > 0 else None
        return dict(points_done=self.points_done, points_total=self.points_total, prompts_done=self.prompts_done,
                    prompts_total=self.prompts, current=self.current, group=self.group, started=self.started,
                    updated=now, elapsed_s=round(elapsed, 1), eta_s=None if eta is None else round(eta, 1))

    def line(self, state: dict | None = None) -> str:
        st = state or self.state()
        now = (f" · {st['current']}: {st['prompts_done']}/{st['prompts_total']} prompts"
               if st["current"] and st["points_done"] < st["points_total"] else "")
        return (f"evaluation: {st['points_done']}/{st['points_total']} points{now} · elapsed "
                f"{_duration(st['elapsed_s'])} · ETA {_duration(st['eta_s'])}")

    def _report(self) -> None:
        st = self.state()
        tqdm.write(self.line(st), file=sys.stderr)
        try:
            row = self.store.get_sweep(self.sweep_id) or {}
            self.store.update_sweep(self.sweep_id, summary=dict(row.get("summary") or {}, evaluation=st))
        except StoreError:  # progress is a courtesy: never fail an evaluation over it
            pass

    def start(self, label: str, points: int = 1) -> None:
        self.current, self.group, self.prompts_done = label, max(1, int(points)), 0
        self._report()

    def prompts_progress(self, done: int, total: int) -> None:
        self.prompts_done = int(done)
        self._report()

    def finished(self, points: int = 1) -> None:
        self.points_done += int(points)
        self.prompts_done = 0
        if self.points_done >= self.points_total:
            self.current = ""
            self._report()


def evaluate_sweep(store: Store, sweep_id: str, *, progress: bool = True) -> list[str]:
    """Evaluate the base model and every finished run of the sweep that has no point yet; returns new point ids."""

    sweep, cfg = sweep_config(store, sweep_id)
    points = store.points(sweep_id=sweep_id)
    need_base = not any(p["kind"] == "base" for p in points)
    done_runs = {p["run_id"] for p in points if p["kind"] == "adapter"}
    finished = [r for r in reversed(store.list_runs(sweep_id=sweep_id)) if r["status"] == "finished"
                and r["adapter_path"]]
    runs = [r for r in finished if r["id"] not in done_runs and not r["config"].get("conditioned")]
    todo = _conditioned_todo(cfg, points, [r for r in finished if r["config"].get("conditioned")])
    if not need_base and not runs and not todo:
        return []
    ev = _Evaluator(cfg, progress)
    bar = EvalProgress(store, sweep_id, int(need_base) + len(runs) + len(todo), len(ev.prompts))
    new = []
    used = _prompts_used(points)
    if used is None and _rounds(cfg) is not None:
        used, ends_new = _evaluate_ends_in_rounds(store, sweep_id, cfg, ev, runs, todo, bar)
        new += ends_new
        if ends_new:
            points = store.points(sweep_id=sweep_id)
            done_runs = {p["run_id"] for p in points if p["kind"] == "adapter"}
            runs = [r for r in runs if r["id"] not in done_runs]
            todo = _conditioned_todo(cfg, points, list({r["id"]: r for r, _ in todo}.values()))
    if used is not None:
        ev.prompts = ev.prompts[:used]        # every other point on the prompts the ends used (comparability)
        bar.prompts = len(ev.prompts)
    if need_base:
        _log("evaluating the base model", progress)
        bar.start("base model")
        res = ev.evaluate(None, "eval base", on_progress=bar.prompts_progress)
        new.append(store_point(store, res, kind="base", label="base model", model=cfg.model, sweep_id=sweep_id,
                               max_generations=GENERATIONS_KEPT))
        bar.finished()
    if runs:
        ev.ensure({r["id"]: r["adapter_path"] for r in runs})
    for r in runs:
        pref = r["config"].get("preference")
        _log(f"evaluating {r['id']} preference {pref_label(pref or [])}", progress)
        bar.start(f"{r['id']} {pref_label(pref or [])}")
        res = ev.evaluate({r["id"]: 1.0}, f"eval {r['id']}", on_progress=bar.prompts_progress)
        new.append(store_point(store, res, kind="adapter", label=r["name"], model=cfg.model, sweep_id=sweep_id,
                               run_id=r["id"], method=r["method"], preference=pref,
                               max_generations=GENERATIONS_KEPT, extra_config=_train_info(r)))
        bar.finished()
    if todo:
        ev.ensure({r["id"]: r["adapter_path"] for r, _ in todo})
    # a conditioned run's preferences go several at a time, their rows in one decode batch (evaluate_at_many); each
    # group is stored as soon as it is done, so an interrupted evaluation resumes from the groups not stored
    per = max(1, eval_rows() // EVAL_BATCH)
    for run_id in dict.fromkeys(r["id"] for r, _ in todo):
        r = next(rr for rr, _ in todo if rr["id"] == run_id)
        prefs = [pref for rr, pref in todo if rr["id"] == run_id]
        for i in range(0, len(prefs), per):
            group = prefs[i:i + per]
            what = " ".join(pref_label(p) for p in group)
            _log(f"evaluating conditioned {run_id} at preference{'s' if len(group) > 1 else ''} {what}", progress)
            bar.start(f"{run_id} at {what}", points=len(group))
            results = ev.evaluate_many(run_id, group, f"eval {run_id} ×{len(group)}", on_progress=bar.prompts_progress)
            for pref, res in zip(group, results):
                new.append(store_point(store, res, kind="conditioned", label=f"{r['name']} @ {pref_label(pref)}",
                                       model=cfg.model, sweep_id=sweep_id, run_id=run_id, method=r["method"],
                                       preference=list(pref), max_generations=GENERATIONS_KEPT,
                                       extra_config=_train_info(r)))
            bar.finished(len(group))
    return new


def _rounds(cfg: SweepConfig) -> Rounds | None:
    """The sweep's early-stopping rounds, or None when it evaluates every point on all its prompts."""
    if cfg.eval_round <= 0:
        return None
    return Rounds(size=cfg.eval_round, minimum=max(cfg.eval_round, cfg.eval_min_prompts))


def _prompts_used(points: list[dict]) -> int | None:
    """The number of prompts an earlier early-stopped evaluation of this sweep settled on (a resumed sweep keeps
    it), or None."""
    for p in points:
        info = (p.get("eval_config") or {}).get("early_stop")
        if info:
            return int(p["eval_config"]["n_prompts"])
    return None


def _one_hot_index(pref) -> int | None:
    if not pref:
        return None
    top = max(pref)
    return pref.index(top) if top > 1 - 1e-9 else None


def _evaluate_ends_in_rounds(store: Store, sweep_id: str, cfg: SweepConfig, ev: "_Evaluator", runs: list[dict],
                             todo: list[tuple[dict, list[float]]], bar: "EvalProgress") -> tuple[int | None, list[str]]:
    """Evaluate the front's ends (the extreme preferences) in rounds of prompts until they are apart
    (``pama.evaluate.evaluate_in_rounds``) and store them; returns (prompts used, their point ids), or (None, [])
    when the sweep has no complete set of ends left to evaluate (they are then evaluated like any point)."""
    n = len(cfg.objectives)
    rounds = _rounds(cfg)
    plain = {_one_hot_index(r["config"].get("preference")): r for r in runs}
    conditioned = {}
    for r, pref in todo:
        i = _one_hot_index(list(pref))
        if i is not None and (not conditioned or next(iter(conditioned.values()))[0]["id"] == r["id"]):
            conditioned[i] = (r, list(pref))
    if all(i in conditioned for i in range(n)):
        run = conditioned[0][0]
        prefs = [conditioned[i][1] for i in range(n)]
        ev.ensure({run["id"]: run["adapter_path"]})

        def evaluate_slice(chunk, first_batch):
            return ev.evaluate_many(run["id"], prefs, f"eval {run['id']} ends", prompts=chunk,
                                    first_batch=first_batch)
        kinds = [dict(kind="conditioned", label=f"{run['name']} @ {pref_label(p)}", run_id=run["id"],
                      method=run["method"], preference=p, extra_config=_train_info(run)) for p in prefs]
    elif all(i in plain for i in range(n)):
        ends = [plain[i] for i in range(n)]
        ev.ensure({r["id"]: r["adapter_path"] for r in ends})

        def evaluate_slice(chunk, first_batch):
            return [ev.evaluate({r["id"]: 1.0}, f"eval {r['id']}", prompts=chunk, first_batch=first_batch)
                    for r in ends]
        kinds = [dict(kind="adapter", label=r["name"], run_id=r["id"], method=r["method"],
                      preference=r["config"].get("preference"), extra_config=_train_info(r)) for r in ends]
    else:
        return None, []
    _log(f"evaluating the {n} ends in rounds of {rounds.size} prompts until they are apart", ev.progress)
    bar.start("the ends, in rounds", points=n)
    results, used = evaluate_in_rounds(evaluate_slice, ev.prompts, EVAL_BATCH, rounds,
                                       on_round=lambda done, total, _r: bar.prompts_progress(done, total))
    apart = ends_apart(results)
    _log(f"the ends {'are apart' if apart else 'are not apart'} after {used} of {len(ev.prompts)} prompts",
         True)   # always: a --quiet sweep's log says how many prompts its front rests on
    ids = []
    for res, kw in zip(results, kinds):
        extra = dict(kw.pop("extra_config"), early_stop=dict(round=rounds.size, minimum=rounds.minimum,
                                                             cap=len(ev.prompts), apart=apart))
        ids.append(store_point(store, res, model=cfg.model, sweep_id=sweep_id, max_generations=GENERATIONS_KEPT,
                               extra_config=extra, **kw))
    bar.finished(n)
    return used, ids


def _conditioned_todo(cfg: SweepConfig, points: list[dict], runs: list[dict]) -> list[tuple[dict, list[float]]]:
    """(run, preference) pairs of the sweep's conditioned runs that the grid still lacks a point for."""
    grid = conditioned_grid(len(cfg.objectives), cfg.points)
    done = [(p["run_id"], p["preference"]) for p in points if p["kind"] == "conditioned"]
    return [(r, pref) for r in runs for pref in grid
            if not any(rid == r["id"] and _same_pref(p, pref) for rid, p in done)]


def _train_info(run: dict) -> dict:
    c = run.get("config") or {}
    return {k: c[k] for k in ("anchor", "learning_rate", "steps") if k in c}


def front(store: Store, sweep_id: str, *, mixtures: int = 0, progress: bool = True,
          length_control: bool = False) -> tuple[list[dict], dict]:
    """Evaluate what is missing, add K exact mixtures between neighbouring front adapters, store the summary.

    The length-controlled scores (pama.controlled) are computed when a point was added or the sweep has none yet;
    ``length_control=True`` recomputes them anyway."""

    sweep, cfg = sweep_config(store, sweep_id)
    if mixtures < 0:
        raise ConfigError(f"mixtures must be ≥ 0, got {mixtures}")
    had = {p["id"] for p in store.points(sweep_id=sweep_id)}
    evaluate_sweep(store, sweep_id, progress=progress)
    if mixtures:
        objectives = list(sweep["objectives"])
        every = [p for p in store.points(sweep_id=sweep_id) if all(o in p["values"] for o in objectives)]
        runs = {r["id"]: r for r in store.list_runs(sweep_id=sweep_id)}
        pts = [p for p, ok in zip(every, pareto.comparable(every))
               if ok and p["kind"] == "adapter" and p["run_id"] in runs]
        if len(pts) >= 2:
            lo, hi = bounds(objectives)
            norm = pareto.normalise(matrix(pts, objectives), lo, hi)
            mask = pareto.non_dominated(norm)
            on = sorted([p for p, m in zip(pts, mask) if m], key=lambda p: p["values"][objectives[0]]["mean"])
            done = {mixture_key(p["mixture"]) for p in store.points(sweep_id=sweep_id, kind="mixture")
                    if p["mixture"]}
            todo = []
            for a, b in zip(on, on[1:]):
                for j in range(1, mixtures + 1):
                    t = j / (mixtures + 1)
                    m = {a["run_id"]: round(1 - t, 6), b["run_id"]: round(t, 6)}
                    if mixture_key(m) not in done:
                        todo.append((a, b, m))
            if todo:
                ev = _Evaluator(cfg, progress)
                ev.ensure({p["run_id"]: runs[p["run_id"]]["adapter_path"] for p in on})
                for a, b, m in todo:
                    wa, wb = m[a["run_id"]], m[b["run_id"]]
                    label = f"mix {wa:.2f}·{pref_label(a['preference'] or [])} + {wb:.2f}·" \
                            f"{pref_label(b['preference'] or [])}"
                    _log(f"evaluating {label}", progress)
                    res = ev.evaluate(m, "eval mixture")
                    pref = None
                    if a["preference"] and b["preference"]:
                        pref = [wa * x + wb * y for x, y in zip(a["preference"], b["preference"])]
                    store_point(store, res, kind="mixture", label=label, model=cfg.model, sweep_id=sweep_id,
                                method=cfg.method, preference=pref, mixture=m, max_generations=GENERATIONS_KEPT)
    if (length_control or not (store.get_sweep(sweep_id)["summary"] or {}).get(LENGTH_CONTROL)
            or {p["id"] for p in store.points(sweep_id=sweep_id)} != had):
        control_sweep(store, sweep_id)   # length-controlled scores of every point, mixtures included
    rows, summary = front_table(store, sweep_id)
    store.update_sweep(sweep_id, summary=summary)
    return rows, summary
