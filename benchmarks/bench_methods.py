"""The methods compared at equal CPU time per front (issue 25): PAMA (λ = 1, the default λ, one conditioned adapter),
MORLHF, MGDA and TRL's GRPO (both aggregations), in the project's default setting and in the paper's first experiment,
over several seeds.

    .venv/bin/python benchmarks/bench_methods.py [--model smollm2-135m] [--minutes 3] [--points 3] [--seeds 0,1,2]
        [--methods pama1,pama,pama-cond,morlhf,mgda,grpo-sum,grpo-norm] [--settings default,paper-exp1]
        [--eval-samples 64] [--eval-max-new-tokens 64] [--bootstrap 1000] [--threads 2]
        [--set key=value ...] [--tag T] [--resume]

    # the smallest end-to-end run (tiny model, seconds; the test runs this):
    .venv/bin/python benchmarks/bench_methods.py --model tiny-random --minutes 0.05 --points 2 --seeds 0 \\
        --eval-samples 4 --eval-max-new-tokens 4 --tag tiny

Methods (``--methods``): ``pama1`` = PAMA with λ = 1 (the paper's PAMA), ``pama`` = PAMA with the project's default
anchor (set explicitly, since the paper-exp1 preset sets λ = 1), ``pama-cond`` = one preference-conditioned PAMA
adapter (default anchor, svd form) evaluated at the same preferences, ``morlhf`` and ``mgda`` = plain PPO as in the
paper (``noon: auto``), ``grpo-sum`` / ``grpo-norm`` = ``trl-grpo`` with aggregation sum_then_normalize /
normalize_then_sum. Settings (``--settings``): ``default`` = TrainConfig's defaults (objectives informativeness,
conciseness; prompts builtin:train, evaluated on builtin:heldout); ``paper-exp1`` = the preset (sentiment, length on
review prompts, evaluated on builtin:heldout:review; trl-grpo gets its 4 samples per prompt from the preset).
``--set key=value`` overrides every run's TrainConfig (e.g. ``batch_size=8``); ``--threads`` sets torch's threads.

Equal CPU time per front: ``--minutes`` is the training wall budget of one front (one method, setting and seed),
split evenly over its runs. A front is one run per preference of ``preference_grid(2, --points)`` (the same for every
method; at the two ends grpo-sum and grpo-norm train the same thing — with one-hot reward_weights, normalising the
sum or the one reward is the same — so only inner points tell them apart: use --points 3 or more), except the
methods that do not read the preference: ``pama1`` (λ = 1) and ``mgda`` train ONE run with the whole budget
(trained at the uniform preference; a one-point front, shown at every preference), and ``pama-cond`` trains its one
conditioned run with the whole budget and is evaluated at every grid preference. Each run trains
in-process (``pama.trainer.train``, which hands trl-grpo to TRL's GRPOTrainer) with a ``BudgetStop`` callback that
cancels it before a step that would end more than half a (mean) step past its budget: the first step always runs,
and the seconds trained are the budget to within half a step. The clock starts at the first step (``on_step_begin``):
a trainer's one-time setup (model load, TRL's trainer set-up and lazy imports inside ``trainer.train``) is not
counted, and is recorded as ``setup_s``. Every run records the steps it reached and its training wall seconds
(``train_s``). Evaluation is not counted. No checkpoints are written (steps and save_every = 100000); the model is
evaluated in memory.

Evaluation: every point, and per setting and seed the base model (tiny-random's weights depend on the seed), with
``pama.evaluate`` on the same first ``--eval-samples`` held-out prompts, the same sampling seed (1234), temperature 0.7
and ``--eval-max-new-tokens``; per-prompt scores and word counts are kept in the jsonl.

Hypervolume of each front: objectives normalised by their declared bounds, reference 0 (the lower bounds), the same
for every method. Per setting and seed, ONE paired bootstrap over prompts (``--bootstrap`` resamples of the prompt
indices, the same indices for every point of every method) gives each front's 95% percentile interval and the
interval of each method's HV minus ``pama``'s (``paired_front_hv``; intervals widened to contain the estimate, as
pama.stats does). The length-controlled HV is the same on length-controlled per-sample scores (``pama.lengthcontrol``:
per objective, one line score ~ log(1 + words) fitted on the base model's and every front point's samples of that
setting and seed pooled, each sample moved to the base model's mean log length); an objective that is length itself
(conciseness, length) enters raw. Over seeds: mean ± sd and min/max of the HV, and the seed-mean HV with the interval
of the averaged bootstrap draws (the draws use the same prompt indices for every seed). Verdict (``verdict``): a method
is "ahead of pama" only if its paired HV-difference interval lies above 0 on every seed, "behind pama" only if below on
every seed, else "no difference at this budget".

Rows are appended to benchmarks/results/methods-<TAG>.jsonl as they come (a meta row, base evaluations, runs, and a
front row once a front's runs are all done; ``--resume`` skips finished fronts and redoes a front cut off mid-way, and
refuses a different budget). The tables go to methods-<TAG>.md (per setting: the Table-3-like summary and the per-seed
detail) and methods-<TAG>.csv (one row per setting, seed and method), the fronts to methods-<TAG>.html (plotly, one
subplot per setting; seed 0 solid, other seeds faint). TAG defaults to the model's name.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("PAMA_OMP_WAIT", "default")  # it trains in-process: the wait policy of `pama train`

from bench_learnability import eval_row, parse_variant  # noqa: E402
from common import RESULTS, fmt_ci, header, markdown_table, write_csv, write_text  # noqa: E402

DEFAULT_ANCHOR = 0.5     # PamaSettings' default λ (checked in main against pama.config)
METHODS: dict[str, dict] = {
    "pama1": {"method": "pama", "anchor": 1.0},
    "pama": {"method": "pama", "anchor": DEFAULT_ANCHOR},
    "pama-cond": {"method": "pama", "anchor": DEFAULT_ANCHOR, "conditioned": True},
    "morlhf": {"method": "morlhf", "noon": "auto"},
    "mgda": {"method": "mgda", "noon": "auto"},
    "grpo-sum": {"method": "trl-grpo", "aggregation": "sum_then_normalize"},
    "grpo-norm": {"method": "trl-grpo", "aggregation": "normalize_then_sum"},
}
BLIND = ("pama1", "mgda")          # the preference does not enter their updates: one run per front
CONDITIONED = ("pama-cond",)
REFERENCE = "pama"                 # the differences and the verdict are against this front
SETTINGS: dict[str, dict] = {"default": {}, "paper-exp1": {"preset": "paper-exp1"}}
STEP_CAP = 100_000                 # runs stop on time, never on steps
EVAL_SEED = 1234


# -- the math (pure) -------------------------------------------------------------------------------------------------
def keep_training(elapsed_s: float, steps: int, budget_s: float) -> bool:
    """Whether a run that has trained ``steps`` steps in ``elapsed_s`` seconds starts another under a budget of
    ``budget_s``: always the first; then only if the next step, at the mean step time so far, ends less than half a
    step past the budget (so the time trained is the budget to within half a step on average)."""
    if steps <= 0:
        return True
    return elapsed_s + 0.5 * elapsed_s / steps <= budget_s


def paired_front_hv(fronts: dict, lower, upper, reference: str | None = REFERENCE, n_boot: int = 1000,
                    seed: int = 0) -> dict[str, dict]:
    """``fronts``: name → scores (points × objectives × prompts), every front evaluated on the same prompts. Returns
    per name: ``hv`` (of the points' mean scores, normalised by ``lower``/``upper``, reference 0), its 95% percentile
    interval ``hv_low``/``hv_high`` from resampling the prompts, and — when ``reference`` is among the fronts —
    ``diff`` = hv − the reference's with ``diff_low``/``diff_high`` from the SAME resamples (paired), plus the draws
    (``boot``, ``diff_boot``) for averaging over seeds. Intervals are widened to contain their estimate."""
    import numpy as np

    from pama import pareto

    names = list(fronts)
    if reference in fronts:
        names = [reference] + [n for n in names if n != reference]
    arrays = [np.asarray(fronts[n], float) for n in names]
    n = arrays[0].shape[-1]
    if any(a.shape[-1] != n for a in arrays):
        raise ValueError("every front must be evaluated on the same prompts")
    lo, hi = np.asarray(lower, float), np.asarray(upper, float)
    ref = np.zeros(len(lo))

    def hv(a, idx=slice(None)) -> float:
        return pareto.hypervolume(pareto.normalise(a[..., idx].mean(-1), lo, hi), ref)

    draws = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    est = np.array([hv(a) for a in arrays])
    boot = np.array([[hv(a, i) for a in arrays] for i in draws]).reshape(n_boot, len(arrays))

    def interval(x: np.ndarray, e: float) -> tuple[float, float]:
        if not len(x):
            return e, e
        q = np.quantile(x, [0.025, 0.975])
        return float(min(q[0], e)), float(max(q[1], e))

    out = {}
    for k, name in enumerate(names):
        d = dict(hv=float(est[k]), boot=boot[:, k])
        d["hv_low"], d["hv_high"] = interval(boot[:, k], d["hv"])
        if reference in fronts:
            d.update(diff=float(est[k] - est[0]), diff_boot=boot[:, k] - boot[:, 0])
            d["diff_low"], d["diff_high"] = interval(d["diff_boot"], d["diff"])
        out[name] = d
    return out


def verdict(diff_intervals: list[tuple[float, float]], reference: str = REFERENCE) -> str:
    """Plain words from one (low, high) interval of HV − the reference's per seed: ahead only if every seed's interval
    lies above 0, behind only if every one lies below, otherwise no difference."""
    if not diff_intervals:
        return f"no {reference} front to compare with"
    n = len(diff_intervals)
    seeds = f"{n} seed{'s' if n > 1 else ''}"
    if all(lo > 0 for lo, _ in diff_intervals):
        return f"ahead of {reference} (on all {seeds})"
    if all(hi < 0 for _, hi in diff_intervals):
        return f"behind {reference} (on all {seeds})"
    return "no difference at this budget"


def length_controlled_scores(groups: dict, is_length: list[bool], base) -> dict:
    """``groups``: key → (scores (objectives × samples), words (samples)); ``base``: the key of the base model's
    group. Per objective one line score ~ log(1 + words) fitted on every group pooled; each sample moved along it to
    the base model's mean log length. Objectives that are length itself (``is_length``) are returned raw. → key →
    array like the scores."""
    import numpy as np

    from pama.lengthcontrol import fit

    keys = list(groups)
    scores = {k: np.asarray(groups[k][0], float) for k in keys}
    words = {k: np.asarray(groups[k][1], float) for k in keys}
    out = {k: scores[k].copy() for k in keys}
    ref = keys.index(base) if base in keys else None
    for j, length_itself in enumerate(is_length):
        if length_itself:
            continue
        f = fit([scores[k][j] for k in keys], [words[k] for k in keys], ref)
        for k in keys:
            out[k][j] = f.adjust(scores[k][j], words[k])
    return out


def spread(values: list[float]) -> dict:
    """mean, sd (n − 1; 0 for one value), min and max of the per-seed values."""
    import numpy as np

    v = np.asarray(values, float)
    return dict(mean=float(v.mean()), sd=float(v.std(ddof=1)) if v.size > 1 else 0.0, min=float(v.min()),
                max=float(v.max()))


# -- training for a wall budget ---------------------------------------------------------------------------------------
def budget_callback(budget_s: float):
    """A pama.callbacks.TrainerCallback that cancels the run when ``keep_training`` says so, and keeps the trainer (its
    model is evaluated afterwards), the steps reached and the seconds trained."""
    from pama.callbacks import TrainerCallback

    class BudgetStop(TrainerCallback):
        def __init__(self):
            self.budget_s, self.trainer, self.begin, self.t0 = budget_s, None, None, None
            self.steps, self.step_s, self.train_s, self.setup_s, self.last = 0, 0.0, None, 0.0, {}

        def elapsed(self) -> float:
            return time.perf_counter() - self.t0 if self.t0 is not None else 0.0

        def on_train_begin(self, trainer):
            self.trainer, self.begin = trainer, time.perf_counter()

        def on_step_begin(self, trainer, control):
            if self.t0 is None:   # the clock starts at the first step: a trainer's one-time setup is not counted
                self.t0 = time.perf_counter()
                self.setup_s = self.t0 - self.begin
            if not keep_training(self.elapsed(), self.steps, self.budget_s):
                self.train_s = self.elapsed()
                control.should_cancel = True

        def on_step_end(self, trainer, step, metrics):
            self.steps = step
            self.step_s += float(metrics.get("time/step", 0.0))
            self.last = {k: round(float(v), 4) for k, v in metrics.items() if not k.startswith(("time/", "trl/"))}

        def on_train_end(self, trainer, status, error=None):
            if self.train_s is None:
                self.train_s = self.elapsed()

    return BudgetStop()


def train_for(cfg, budget_s: float):
    """Train ``cfg`` in-process until the budget is used; → (the callback: trainer, steps, seconds; the model)."""
    from pama.trainer import RunCancelled, train

    stop = budget_callback(budget_s)
    try:
        train(cfg, None, progress=False, callbacks=[stop])
    except RunCancelled:
        pass   # the budget was used: what BudgetStop asked for
    t = stop.trainer
    model = t.accelerator.unwrap_model(t.model) if getattr(t, "accelerator", None) is not None else t.model
    return stop, model


def train_config(setting: str, method: str, model: str, seed: int, preference, overrides: dict):
    """The TrainConfig of one run: the setting (a preset or none) < the method's settings < --set."""
    from pama.config import TrainConfig, from_dict

    data = dict(SETTINGS[setting], **METHODS[method], model=model, seed=seed, steps=STEP_CAP, save_every=STEP_CAP,
                live_eval_every=0)
    data.update(overrides)
    if preference is not None:
        data["preference"] = list(preference)
    return from_dict(TrainConfig, data, source=f"{setting} / {method}").validate()


def front_plan(method: str, grid: list[list[float]]) -> list[tuple[list[float] | None, list | None]]:
    """(training preference or None, evaluation preferences or None) per run of a front: one run per grid preference,
    one blind run evaluated once, or one conditioned run evaluated at every grid preference."""
    if method in BLIND:
        return [(None, None)]
    if method in CONDITIONED:
        return [(None, grid)]
    return [(p, None) for p in grid]


# -- reading the records ----------------------------------------------------------------------------------------------
def front_runs(records: list[dict], setting: str, seed: int) -> dict[str, list[dict]]:
    """method → the run rows of its finished front for one setting and seed, in run order. A front is finished when
    its front row is there; the runs of an attempt cut off mid-way (no front row with their ``front_id``) are left
    out, so a resumed front counts only its complete attempt."""
    done = {r.get("front_id") for r in records if r["kind"] == "front" and r["setting"] == setting
            and r["seed"] == seed}
    out: dict[str, list[dict]] = {}
    for r in records:
        if r["kind"] == "run" and r["setting"] == setting and r["seed"] == seed and r.get("front_id") in done:
            out.setdefault(r["method"], []).append(r)
    return {m: out[m] for m in METHODS if m in out}


def front_points(records: list[dict], setting: str, seed: int) -> dict[str, list[dict]]:
    """method → the evaluated points (preference, None for a blind run's one point, and eval row) of its finished
    front for one setting and seed."""
    return {m: [p for r in runs for p in r["points"]] for m, runs in front_runs(records, setting, seed).items()}


def _ends(points: list[dict], objectives: list[str]) -> dict:
    """Mean of each objective at the grid's two ends, (1, 0) and (0, 1); a one-point (blind) front gives its point."""
    out = {}
    for end, pref in (("(1,0)", [1.0, 0.0]), ("(0,1)", [0.0, 1.0])):
        p = next((p for p in points if p["preference"] is None
                  or all(abs(a - b) < 1e-6 for a, b in zip(p["preference"], pref))), None)
        for o in objectives:
            out[f"{o} at {end}"] = p["eval"]["values"][o][0] if p else None
    return out


def _ci(x: float, lo: float, hi: float, signed: bool = False) -> str:
    return fmt_ci(x, lo, hi, 4, signed)


def summarise(records: list[dict], n_boot: int) -> tuple[dict, list[dict]]:
    """→ (per setting: its summary rows, per-seed rows and objectives; the per-seed rows of every setting)."""
    import numpy as np

    from pama import objectives as objmod

    by_setting, detail_all = {}, []
    settings = list(dict.fromkeys(r["setting"] for r in records if r["kind"] == "base"))
    for setting in settings:
        bases = {r["seed"]: r for r in records if r["kind"] == "base" and r["setting"] == setting}
        objectives = next(iter(bases.values()))["objectives"]
        objs = [objmod.get(o) for o in objectives]
        lower, upper = [o.lower for o in objs], [o.upper for o in objs]
        is_len = [bool(o.measures_length) for o in objs]
        per_method: dict[str, list[dict]] = {}
        detail = []
        for seed, base in sorted(bases.items()):
            fronts = front_points(records, setting, seed)
            if not fronts:
                continue
            raw = {m: np.array([p["eval"]["scores"] for p in pts], float) for m, pts in fronts.items()}
            groups = {("base",): (base["eval"]["scores"], base["eval"]["words"])}
            for m, pts in fronts.items():
                for i, p in enumerate(pts):
                    groups[(m, i)] = (p["eval"]["scores"], p["eval"]["words"])
            lc = length_controlled_scores(groups, is_len, ("base",))
            lc_fronts = {m: np.array([lc[(m, i)] for i in range(len(pts))]) for m, pts in fronts.items()}
            hv = paired_front_hv(raw, lower, upper, REFERENCE, n_boot)
            hv_lc = paired_front_hv(lc_fronts, lower, upper, REFERENCE, n_boot)
            runs = front_runs(records, setting, seed)
            for m, pts in fronts.items():
                h, hl = hv[m], hv_lc[m]
                row = dict(setting=setting, seed=seed, method=m, runs=len(runs[m]), points=len(pts),
                           steps="/".join(str(r["steps"]) for r in runs[m]),
                           train_s=round(sum(r["train_s"] for r in runs[m]), 1),
                           HV=h["hv"], HV_low=h["hv_low"], HV_high=h["hv_high"],
                           dHV=h.get("diff"), dHV_low=h.get("diff_low"), dHV_high=h.get("diff_high"),
                           LC_HV=hl["hv"], LC_HV_low=hl["hv_low"], LC_HV_high=hl["hv_high"],
                           dLC_HV=hl.get("diff"), dLC_HV_low=hl.get("diff_low"), dLC_HV_high=hl.get("diff_high"),
                           **_ends(pts, objectives))
                detail.append(row)
                per_method.setdefault(m, []).append(dict(row, boot=h["boot"], diff_boot=h.get("diff_boot"),
                                                         lc_boot=hl["boot"], lc_diff_boot=hl.get("diff_boot")))
        summary = []
        for m, rows in per_method.items():
            s, slc = spread([r["HV"] for r in rows]), spread([r["LC_HV"] for r in rows])
            boot = np.mean([r["boot"] for r in rows], axis=0)
            lc_boot = np.mean([r["lc_boot"] for r in rows], axis=0)
            lo, hi = np.quantile(boot, [0.025, 0.975]) if n_boot else (s["mean"], s["mean"])
            llo, lhi = np.quantile(lc_boot, [0.025, 0.975]) if n_boot else (slc["mean"], slc["mean"])
            has_ref = rows[0]["dHV"] is not None
            out = {"method": m}
            for key in rows[0]:
                if " at (" in key:
                    vals = [r[key] for r in rows if r[key] is not None]
                    out[key] = float(np.mean(vals)) if vals else None
            out.update({
                "HV (seed mean) [95% CI]": _ci(s["mean"], min(lo, s["mean"]), max(hi, s["mean"])),
                "HV sd / min–max over seeds": f"{s['sd']:.4f} / {s['min']:.4f}–{s['max']:.4f}",
                f"HV − {REFERENCE} per seed [95% CI]": "; ".join(_ci(r["dHV"], r["dHV_low"], r["dHV_high"], True)
                                                               for r in rows) if has_ref else "–",
                "LC HV (seed mean) [95% CI]": _ci(slc["mean"], min(llo, slc["mean"]), max(lhi, slc["mean"])),
                f"LC HV − {REFERENCE} per seed [95% CI]": "; ".join(
                    _ci(r["dLC_HV"], r["dLC_HV_low"], r["dLC_HV_high"], True) for r in rows) if has_ref else "–",
                "steps per run (per seed)": "; ".join(r["steps"] for r in rows),
                "train s per front": f"{np.mean([r['train_s'] for r in rows]):.0f}",
                "seeds": len(rows),
                "verdict (HV)": "reference" if m == REFERENCE else verdict(
                    [(r["dHV_low"], r["dHV_high"]) for r in rows] if has_ref else []),
                "verdict (LC HV)": "reference" if m == REFERENCE else verdict(
                    [(r["dLC_HV_low"], r["dLC_HV_high"]) for r in rows] if has_ref else []),
            })
            summary.append(out)
        by_setting[setting] = dict(summary=summary, detail=detail, objectives=objectives, is_length=is_len)
        detail_all += detail
    return by_setting, detail_all


def plot(records: list[dict], path) -> None:
    """One subplot per setting: every method's front (objective means, points in preference order), seed 0 solid,
    other seeds faint; the base model as a black cross."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    settings = list(dict.fromkeys(r["setting"] for r in records if r["kind"] == "base"))
    if not settings:
        return
    fig = make_subplots(rows=1, cols=len(settings), subplot_titles=settings)
    colors = dict(zip(METHODS, qualitative.Plotly))
    for c, setting in enumerate(settings, start=1):
        bases = {r["seed"]: r for r in records if r["kind"] == "base" and r["setting"] == setting}
        a, b = next(iter(bases.values()))["objectives"]
        first_seed = min(bases)
        for seed, base in sorted(bases.items()):
            for m, pts in front_points(records, setting, seed).items():
                pts = sorted(pts, key=lambda p: -(p["preference"] or [0.5])[0])
                solid = seed == first_seed
                fig.add_trace(go.Scatter(
                    x=[p["eval"]["values"][a][0] for p in pts], y=[p["eval"]["values"][b][0] for p in pts],
                    mode="lines+markers", name=m, legendgroup=m, showlegend=solid and c == 1,
                    opacity=1.0 if solid else 0.25, line=dict(color=colors[m], dash="solid" if solid else "dot"),
                    hovertext=[f"{m} seed {seed} p={p['preference'] or 'blind'}" for p in pts]), row=1, col=c)
            v = base["eval"]["values"]
            fig.add_trace(go.Scatter(x=[v[a][0]], y=[v[b][0]], mode="markers", name="base model",
                                     legendgroup="base", showlegend=c == 1 and seed == first_seed,
                                     opacity=1.0 if seed == first_seed else 0.25,
                                     marker=dict(color="black", symbol="x", size=10)), row=1, col=c)
        fig.update_xaxes(title_text=a, row=1, col=c)
        fig.update_yaxes(title_text=b, row=1, col=c)
    fig.update_layout(title="Fronts at equal training time per front (seed 0 solid, other seeds faint)")
    fig.write_html(path, include_plotlyjs="cdn")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated, of " + ", ".join(METHODS))
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated, of " + ", ".join(SETTINGS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--minutes", type=float, default=3.0, help="training wall minutes per front")
    ap.add_argument("--points", type=int, default=3, help="preferences of the grid, ends included (at the ends the two "
                    "GRPO aggregations are the same method: a one-hot weight normalises one reward either way)")
    ap.add_argument("--eval-samples", type=int, default=64)
    ap.add_argument("--eval-max-new-tokens", type=int, default=64)
    ap.add_argument("--bootstrap", type=int, default=1000, help="resamples of the prompts for the intervals")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (training and evaluation)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="TrainConfig overrides for every run")
    ap.add_argument("--tag", default="", help="result files methods-<TAG>.* (default: the model's name)")
    ap.add_argument("--resume", action="store_true", help="skip the fronts already in the jsonl")
    args = ap.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    bad = [m for m in methods if m not in METHODS] + [s for s in settings if s not in SETTINGS]
    if bad:
        ap.error(f"unknown method(s)/setting(s) {bad}; methods: {', '.join(METHODS)}; settings: {', '.join(SETTINGS)}")

    os.environ.setdefault("PAMA_HOME", tempfile.mkdtemp(prefix="pama-methods-"))
    import torch

    from pama import models
    from pama import objectives as objmod
    from pama.config import EvalSettings, PamaSettings, preset_values
    from pama.evaluate import evaluate_at, evaluate_point
    from pama.prompts import load_prompts
    from pama.sweep import preference_grid

    assert PamaSettings().anchor == DEFAULT_ANCHOR, "bench_methods.DEFAULT_ANCHOR is out of date"
    torch.set_num_threads(args.threads)
    overrides = dict(parse_variant("set:" + ",".join(args.set))[1], threads=args.threads)
    stem = "methods-" + (args.tag or args.model.replace("/", "_"))
    log_path = RESULTS / f"{stem}.jsonl"
    RESULTS.mkdir(parents=True, exist_ok=True)
    budget = dict(model=args.model, minutes=args.minutes, points=args.points, eval_samples=args.eval_samples,
                  eval_max_new_tokens=args.eval_max_new_tokens, eval_seed=EVAL_SEED, overrides=overrides)
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()] \
        if args.resume and log_path.exists() else []
    meta = next((r for r in records if r["kind"] == "meta"), None)
    if meta is not None and meta["budget"] != json.loads(json.dumps(budget)):
        raise SystemExit(f"--resume: {log_path} was made with {meta['budget']}, not {budget}: use another --tag")
    if not args.resume:
        log_path.write_text("")
    grid = preference_grid(2, args.points)
    info = {"methods": ", ".join(methods), "settings": ", ".join(settings), "seeds": args.seeds,
            "training minutes per front": args.minutes, "preferences": grid, "overrides": json.dumps(overrides),
            "eval prompts": args.eval_samples, "eval max new tokens": args.eval_max_new_tokens,
            "eval": f"seed {EVAL_SEED}, temperature 0.7", "bootstrap resamples": args.bootstrap}
    print(header("Methods at equal CPU time per front", info), flush=True)

    def append(rec: dict) -> None:
        records.append(rec)
        with open(log_path, "a") as fh:
            fh.write(json.dumps(rec, default=float) + "\n")

    if meta is None:
        append(dict(kind="meta", budget=budget))
    done = {(r["setting"], r["seed"], r["method"]) for r in records if r["kind"] == "front"}
    eval_kw = dict(seed=EVAL_SEED, max_new_tokens=args.eval_max_new_tokens, batch_size=32)
    for setting in settings:
        probe = train_config(setting, "pama", args.model, 0, None, overrides)
        objectives = list(probe.objectives)
        eval_prompts = (preset_values(probe.preset).get("eval_prompts") if probe.preset else None) \
            or EvalSettings().eval_prompts
        prompts = load_prompts(eval_prompts, limit=args.eval_samples)
        for seed in seeds:
            base = next((r for r in records if r["kind"] == "base" and r["setting"] == setting
                         and r["seed"] == seed), None)
            if base is None:
                base_model, tok = models.load(args.model, seed=seed)
                res = evaluate_point(base_model, tok, objectives, prompts, **eval_kw)
                base = dict(kind="base", setting=setting, seed=seed, objectives=objectives, eval_prompts=eval_prompts,
                            eval=eval_row(res, None))
                append(base)
                del base_model
            base_d1 = base["eval"]["distinct_1"]
            for method in methods:
                if (setting, seed, method) in done:
                    continue
                plan = front_plan(method, grid)
                front_id = f"{setting}/{seed}/{method}/{time.time_ns()}"   # this attempt's runs
                budget_s = args.minutes * 60 / len(plan)
                runs = []
                for pref, eval_prefs in plan:
                    cfg = train_config(setting, method, args.model, seed, pref, overrides)
                    print(f"{setting} seed {seed} {method} p={pref or ('grid' if eval_prefs else 'blind')}: "
                          f"{budget_s:.0f} s of training", flush=True)
                    stop, model = train_for(cfg, budget_s)
                    tok = stop.trainer.tokenizer
                    t0 = time.perf_counter()
                    if eval_prefs is None:
                        points = [dict(preference=pref, eval=eval_row(
                            evaluate_point(model, tok, objectives, prompts, **eval_kw), base_d1))]
                    else:
                        points = [dict(preference=p, eval=eval_row(
                            evaluate_at(model, tok, objectives, prompts, p, **eval_kw), base_d1)) for p in eval_prefs]
                    rec = dict(kind="run", setting=setting, seed=seed, method=method, front_id=front_id,
                               preference=pref,
                               budget_s=budget_s, steps=stop.steps, train_s=round(stop.train_s, 2),
                               step_s=round(stop.step_s, 2), setup_s=round(stop.setup_s, 2),
                               eval_s=round(time.perf_counter() - t0, 2),
                               last_metrics=stop.last, points=points, config=cfg.to_dict())
                    append(rec)
                    runs.append(rec)
                    print(f"  {stop.steps} step(s) in {stop.train_s:.1f} s; evaluated in {rec['eval_s']:.1f} s: "
                          + "; ".join(", ".join(f"{o} {p['eval']['values'][o][0]:.3f}" for o in objectives)
                                      for p in points), flush=True)
                    del model, stop
                append(dict(kind="front", setting=setting, seed=seed, method=method, front_id=front_id, runs=len(runs),
                            steps=[r["steps"] for r in runs], train_s=sum(r["train_s"] for r in runs)))

    by_setting, detail = summarise(records, args.bootstrap)
    text = header("Methods at equal CPU time per front", info) + "\n"
    for setting, s in by_setting.items():
        lengths = [o for o, x in zip(s["objectives"], s["is_length"]) if x]
        text += (f"\n## {setting}: {', '.join(s['objectives'])}\n\n" + markdown_table(s["summary"])
                 + f"\nObjective means at the ends: mean over seeds. HV: bounds-normalised, reference 0; 95% "
                   f"percentile intervals over {args.bootstrap} paired resamples of the prompts. LC HV: the same on "
                   "length-controlled scores"
                 + (f" ({', '.join(lengths)} is length itself and enters raw)" if lengths else "")
                 + ". pama1 and mgda: one run per front (the preference does not enter), a one-point front. "
                   "Verdict: ahead/behind only if the paired interval of the difference excludes 0 on every seed.\n\n"
                 + "Per seed:\n\n" + markdown_table(s["detail"], [c for c in s["detail"][0] if " at (" not in c]))
    print(text)
    write_text(f"{stem}.md", text)
    write_csv(f"{stem}.csv", detail)
    plot(records, RESULTS / f"{stem}.html")


if __name__ == "__main__":
    main()
