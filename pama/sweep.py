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

Hypervolume: objectives are normalised by their declared bounds (``Objective.lower/upper`` → [0, 1]) and the
reference point is the normalised lower bounds, i.e. 0 in every objective. A reference at the base model's values
would give 0 to any adapter that trades one objective for another (it must beat the base in every objective to count),
hiding exactly the trade-offs a front is about; so the reference is 0 and the summary reports the hypervolume of the
base model alone next to that of the sweep (``hypervolume_base`` / ``hypervolume_adapters`` / ``hypervolume``).
"""
from __future__ import annotations

import sys
import time
from typing import Iterable

import numpy as np
from tqdm.auto import tqdm

from . import adapters as adp
from . import conditioning as cond
from . import models, pareto
from . import objectives as objmod
from .config import ConfigError, SweepConfig, TrainConfig, from_dict
from .controlled import SUMMARY_KEY as LENGTH_CONTROL, control_sweep
from .evaluate import eval_rows, evaluate_at, evaluate_at_many, evaluate_point, store_point
from .pareto import conditioned_grid, preference_grid
from .prompts import load_prompts
from .runs import default_sweep_name
from .store import Store, StoreError
from .trainer import RunCancelled, resume, train

EVAL_BATCH = 32  # decoding is memory-bound on a CPU: 32 rows cost far less than twice 16
GENERATIONS_KEPT = None  # every evaluated generation is stored (64 short rows per point); exports sample them


def _train_config(cfg: SweepConfig, preference: list[float]) -> TrainConfig:
    names = {f for f in TrainConfig.__dataclass_fields__}
    data = {k: v for k, v in cfg.to_dict().items() if k in names}
    data["preference"] = list(preference)
    data["name"] = ""
    return from_dict(TrainConfig, data, source="sweep")


def _pref_label(pref: Iterable[float]) -> str:
    return "(" + ", ".join(f"{p:.2f}" for p in pref) + ")"


def _same_pref(a, b) -> bool:
    return a is not None and b is not None and len(a) == len(b) and np.allclose(a, b, atol=1e-6)


def sweep_config(store: Store, sweep_id: str) -> tuple[dict, SweepConfig]:
    sweep = store.get_sweep(sweep_id)
    if sweep is None:
        raise StoreError(f"No sweep with id '{sweep_id}' in {store.url}. `python -m pama front` lists them.")
    config = dict(sweep["config"])
    config.setdefault("eval_temperature", 0.7)  # sweeps stored before the option were evaluated at 0.7
    return sweep, from_dict(SweepConfig, config, source=f"sweep {sweep_id}")


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
              name: str | None = None) -> str:
    """Train (or resume) one adapter per grid preference, evaluate them and the base, record the front."""

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
    _log(f"sweep {sweep_id}: " + (f"one conditioned {cfg.conditioning} run, {cfg.steps} steps, evaluated at "
                                  f"{len(conditioned_grid(len(cfg.objectives), cfg.points))} preferences"
                                  if cfg.conditioned else
                                  f"{len(grid)} preferences, {cfg.method}, {cfg.steps} steps each"), progress)
    store.update_sweep(sweep_id, status="running")
    try:
        for i, pref in enumerate(grid, 1):
            run = _run_for(store.list_runs(sweep_id=sweep_id), pref)
            if run is not None and run["status"] == "finished" and run["adapter_path"]:
                _log(f"[{i}/{len(grid)}] preference {_pref_label(pref)}: trained ({run['id']})", progress)
                continue
            if run is not None:
                _log(f"[{i}/{len(grid)}] preference {_pref_label(pref)}: resuming {run['id']} at step {run['step']}",
                     progress)
                resume(run["id"], store, progress=progress)
            else:
                _log(f"[{i}/{len(grid)}] preference {_pref_label(pref)}: training", progress)
                train(_train_config(cfg, pref), store, sweep_id=sweep_id, progress=progress)
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

    def evaluate(self, weights: dict[str, float] | None, desc: str, *, preference=None, on_progress=None):
        """The base (no weights), an adapter or a mixture; a conditioned adapter ({run: 1}) at ``preference``."""
        if weights:
            adp.mix(self.model, weights)
        else:
            adp.use_base(self.model)
        cfg = self.cfg
        kw = dict(seed=cfg.eval_seed, max_new_tokens=cfg.eval_max_new_tokens, batch_size=EVAL_BATCH,
                  temperature=cfg.eval_temperature, progress=self.progress, desc=desc, on_progress=on_progress)
        if preference is not None:
            return evaluate_at(self.model, self.tok, cfg.objectives, self.prompts, preference,
                               adapter=next(iter(weights)), **kw)
        return evaluate_point(self.model, self.tok, cfg.objectives, self.prompts, **kw)

    def evaluate_many(self, run_id: str, preferences: list[list[float]], desc: str, *, on_progress=None):
        """A conditioned adapter at several preferences together (``evaluate_at_many``: the rows of different
        preferences in one decode batch, each (preference, prompt) with the seed it has one at a time)."""
        adp.mix(self.model, {run_id: 1.0})
        cfg = self.cfg
        return evaluate_at_many(self.model, self.tok, cfg.objectives, self.prompts, preferences, adapter=run_id,
                                seed=cfg.eval_seed, max_new_tokens=cfg.eval_max_new_tokens, batch_size=EVAL_BATCH,
                                temperature=cfg.eval_temperature, progress=self.progress, desc=desc,
                                on_progress=on_progress)


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
        _log(f"evaluating {r['id']} preference {_pref_label(pref or [])}", progress)
        bar.start(f"{r['id']} {_pref_label(pref or [])}")
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
            what = " ".join(_pref_label(p) for p in group)
            _log(f"evaluating conditioned {run_id} at preference{'s' if len(group) > 1 else ''} {what}", progress)
            bar.start(f"{run_id} at {what}", points=len(group))
            results = ev.evaluate_many(run_id, group, f"eval {run_id} ×{len(group)}", on_progress=bar.prompts_progress)
            for pref, res in zip(group, results):
                new.append(store_point(store, res, kind="conditioned", label=f"{r['name']} @ {_pref_label(pref)}",
                                       model=cfg.model, sweep_id=sweep_id, run_id=run_id, method=r["method"],
                                       preference=list(pref), max_generations=GENERATIONS_KEPT,
                                       extra_config=_train_info(r)))
            bar.finished(len(group))
    return new


def _conditioned_todo(cfg: SweepConfig, points: list[dict], runs: list[dict]) -> list[tuple[dict, list[float]]]:
    """(run, preference) pairs of the sweep's conditioned runs that the grid still lacks a point for."""
    grid = conditioned_grid(len(cfg.objectives), cfg.points)
    done = [(p["run_id"], p["preference"]) for p in points if p["kind"] == "conditioned"]
    return [(r, pref) for r in runs for pref in grid
            if not any(rid == r["id"] and _same_pref(p, pref) for rid, p in done)]


def _train_info(run: dict) -> dict:
    c = run.get("config") or {}
    return {k: c[k] for k in ("anchor", "learning_rate", "steps") if k in c}


def _bounds(objectives: list[str]) -> tuple[np.ndarray, np.ndarray]:
    objs = [objmod.get(o) for o in objectives]
    return np.array([o.lower for o in objs], float), np.array([o.upper for o in objs], float)


def _matrix(points: list[dict], objectives: list[str]) -> np.ndarray:
    return np.array([[p["values"][o]["mean"] for o in objectives] for p in points], float).reshape(len(points),
                                                                                                  len(objectives))


def summarise(store: Store, sweep_id: str) -> dict:
    """Front ids, hypervolumes (all points / trained adapters / base alone) on bounds-normalised objectives.

    Only points evaluated with the sweep's own setting count (``pareto.comparable``): a quick mixture evaluated on
    fewer prompts or shorter responses is listed in ``other_eval_point_ids`` and kept out of front and hypervolume."""

    sweep = store.get_sweep(sweep_id)
    objectives = list(sweep["objectives"])
    evaluated = [p for p in store.points(sweep_id=sweep_id) if all(o in p["values"] for o in objectives)]
    keep = pareto.comparable(evaluated)
    points = [p for p, k in zip(evaluated, keep) if k]
    lo, hi = _bounds(objectives)
    ref = np.zeros(len(objectives))
    norm = pareto.normalise(_matrix(points, objectives), lo, hi) if points else np.zeros((0, len(objectives)))

    def hv(kinds) -> float:
        rows = [i for i, p in enumerate(points) if p["kind"] in kinds]
        return pareto.hypervolume(norm[rows], ref) if rows else 0.0

    order = pareto.front_order(norm) if points else []
    summary = dict(
        objectives=objectives, lower=lo.tolist(), upper=hi.tolist(),
        reference=ref.tolist(), reference_raw=lo.tolist(),
        reference_note="objectives normalised by their bounds to [0, 1]; reference = normalised lower bounds (0)",
        hypervolume=hv(("base", "adapter", "mixture", "conditioned")),
        hypervolume_adapters=hv(("adapter", "conditioned")),   # every trained point (a conditioned run's included)
        hypervolume_adapters_and_base=hv(("adapter", "conditioned", "base")),
        hypervolume_conditioned=hv(("conditioned",)),
        hypervolume_base=hv(("base",)),
        front_point_ids=[points[i]["id"] for i in order],
        n_points={k: sum(p["kind"] == k for p in points) for k in ("base", "adapter", "mixture", "conditioned")},
        other_eval_point_ids=[p["id"] for p, k in zip(evaluated, keep) if not k],
        updated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    summary["hypervolume_gain_over_base"] = summary["hypervolume"] - summary["hypervolume_base"]
    if (sweep.get("summary") or {}).get(LENGTH_CONTROL):   # written by pama.controlled.control_sweep: kept
        summary[LENGTH_CONTROL] = sweep["summary"][LENGTH_CONTROL]
    return summary


def front_table(store: Store, sweep_id: str) -> tuple[list[dict], dict]:
    """One row per point of the sweep (sorted: base, then by first objective), and the summary."""

    sweep = store.get_sweep(sweep_id)
    if sweep is None:
        raise StoreError(f"No sweep with id '{sweep_id}' in {store.url}.")
    summary = summarise(store, sweep_id)
    objectives = summary["objectives"]
    points = [p for p in store.points(sweep_id=sweep_id) if all(o in p["values"] for o in objectives)]
    lo, hi = np.array(summary["lower"]), np.array(summary["upper"])
    mat = _matrix(points, objectives)
    norm = pareto.normalise(mat, lo, hi) if points else mat
    comparable = np.array(pareto.comparable(points), bool)
    on_front = np.zeros(len(points), bool)
    if comparable.any():  # a point evaluated otherwise is never on the sweep's front (nor dominates anything)
        on_front[comparable] = pareto.non_dominated(norm[comparable])
    runs = {r["id"]: r for r in store.list_runs(sweep_id=sweep_id)}
    rows = []
    for i, p in enumerate(points):
        run = runs.get(p["run_id"]) if p["run_id"] else None
        rc = run["config"] if run else {}
        row = dict(point_id=p["id"], kind=p["kind"], label=p["label"], run_id=p["run_id"],
                   preference=p["preference"], mixture=p["mixture"], on_front=bool(on_front[i]),
                   comparable=bool(comparable[i]),
                   kl=p["kl"], mean_length=p["mean_length"], distinct_1=p["distinct_1"], distinct_2=p["distinct_2"],
                   eos_fraction=p.get("eos_fraction"),
                   config={k: rc[k] for k in ("method", "anchor", "learning_rate", "steps", "batch_size",
                                              "max_new_tokens", "seed", "conditioned", "conditioning") if k in rc})
        for j, o in enumerate(objectives):
            v = p["values"][o]
            row[f"{o}/mean"] = v["mean"]
            row[f"{o}/ci_low"] = v["ci_low"]
            row[f"{o}/ci_high"] = v["ci_high"]
            row[f"{o}/normalised"] = float(norm[i, j])
            for k in ("lc_mean", "lc_low", "lc_high"):   # length-controlled (None: not computed, or is length)
                row[f"{o}/{k}"] = v.get(k)
        rows.append(row)
    first = objectives[0] if objectives else None
    rows.sort(key=lambda r: (r["kind"] != "base", r.get(f"{first}/mean", 0)))
    return rows, summary


def _mixture_key(m: dict) -> tuple:
    return tuple(sorted((k, round(float(v), 6)) for k, v in m.items()))


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
            lo, hi = _bounds(objectives)
            norm = pareto.normalise(_matrix(pts, objectives), lo, hi)
            mask = pareto.non_dominated(norm)
            on = sorted([p for p, m in zip(pts, mask) if m], key=lambda p: p["values"][objectives[0]]["mean"])
            done = {_mixture_key(p["mixture"]) for p in store.points(sweep_id=sweep_id, kind="mixture")
                    if p["mixture"]}
            todo = []
            for a, b in zip(on, on[1:]):
                for j in range(1, mixtures + 1):
                    t = j / (mixtures + 1)
                    m = {a["run_id"]: round(1 - t, 6), b["run_id"]: round(t, 6)}
                    if _mixture_key(m) not in done:
                        todo.append((a, b, m))
            if todo:
                ev = _Evaluator(cfg, progress)
                ev.ensure({p["run_id"]: runs[p["run_id"]]["adapter_path"] for p in on})
                for a, b, m in todo:
                    wa, wb = m[a["run_id"]], m[b["run_id"]]
                    label = f"mix {wa:.2f}·{_pref_label(a['preference'] or [])} + {wb:.2f}·" \
                            f"{_pref_label(b['preference'] or [])}"
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


# ---------------------------------------------------------------------------------------------------------------------
# printing

def format_table(rows: list[dict], summary: dict) -> str:
    objectives = summary["objectives"]
    head = f"{'point':<13} {'kind':<11} {'preference / mixture':<30} " + " ".join(
        f"{o[:22]:>22}" for o in objectives) + f" {'KL':>6} {'len':>5} {'EOS':>4} front"
    lines = [head, "-" * len(head)]
    for r in rows:
        if r["kind"] == "mixture" and r["mixture"]:
            what = " + ".join(f"{w:.2f}·{k}" for k, w in r["mixture"].items())
        elif r["preference"]:
            what = _pref_label(r["preference"])
        else:
            what = "base"
        cells = []
        for o in objectives:
            m, lo, hi = r[f"{o}/mean"], r[f"{o}/ci_low"], r[f"{o}/ci_high"]
            cells.append(f"{m:>8.3f} [{lo:.3f},{hi:.3f}]".rjust(22))
        lines.append(f"{r['point_id']:<13} {r['kind']:<11} {what[:30]:<30} " + " ".join(cells)
                     + f" {r['kl'] or 0:>6.2f} {r['mean_length'] or 0:>5.1f} "
                     + ("   -" if r.get("eos_fraction") is None else f"{r['eos_fraction']:>4.0%}")
                     + f"{'  *' if r['on_front'] else ''}")
    lines.append("")
    lines.append(f"hypervolume (normalised objectives, reference {summary['reference']}): "
                 f"all points {summary['hypervolume']:.4f} | trained adapters {summary['hypervolume_adapters']:.4f} | "
                 + (f"conditioned {summary['hypervolume_conditioned']:.4f} | "
                    if summary.get("n_points", {}).get("conditioned") else "") +
                 f"base alone {summary['hypervolume_base']:.4f}")
    return "\n".join(lines)
