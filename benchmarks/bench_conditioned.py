"""One conditioned adapter against a K-adapter sweep at equal training time: does one run give the whole front?

    .venv/bin/python benchmarks/bench_conditioned.py [--objectives informativeness,conciseness] [--minutes 10]
        [--sweep-points 5] [--forms svd prefix] [--method pama] [--set key=value ...] [--eval-samples 64]
        [--eval-max-new-tokens 96] [--eval-temperature 0.7] [--bootstrap 1000] [--tag T] [--resume]

Arms, each with ``--minutes`` of training wall time in all (evaluation is not counted):
- ``sweep``: K = ``--sweep-points`` adapters at the simplex grid's preferences, ``minutes / K`` each;
- ``conditioned-svd`` / ``conditioned-prefix``: ONE preference-conditioned adapter (``TrainConfig.conditioned``,
  docs/conditioned.md) trained for ``minutes``, then evaluated at ``pama.pareto.conditioned_grid`` (11 preferences
  for two objectives).
Every point, and the base model, is evaluated with ``pama.evaluate`` on the same held-out prompts, sampling seeds,
lengths and temperature.

Reported per arm: the hypervolume of its trained points (objectives normalised by their bounds, reference 0, as the
sweeps' summaries) with a 95% percentile-bootstrap interval over prompts (the prompts are resampled jointly for all
points, so the interval is that of the front, not of one point); the separation of the two ends, (1, 0) against
(0, 1), per objective in units of their mean 95% half-width (``bench_learnability.separation``: above 2 the intervals
do not overlap); and how faithfully the preference orders the points: Spearman's ρ of p_1 against objective 1 over
the arm's points.

Rows are appended to benchmarks/results/conditioned[-TAG].jsonl as they come; ``--resume`` skips what is there (a
run cut off mid-way is redone). The summary goes to conditioned[-TAG].md / .csv.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile

os.environ.setdefault("PAMA_OMP_WAIT", "default")  # it trains in-process: the wait policy of `pama train`

from bench_learnability import eval_row, parse_variant, separation, train_and_eval  # noqa: E402
from common import RESULTS, header, markdown_table, write_csv, write_text  # noqa: E402


def hypervolume_ci(points: list[dict], objectives: list[str], n_boot: int, seed: int = 0) -> tuple[float, float, float]:
    """(HV, low, high) of the points' means, bounds-normalised with reference 0, with a 95% percentile-bootstrap
    interval from resampling the prompts (one resample for all points: they were evaluated on the same prompts).
    compare_fronts.paired_hypervolumes does the work, for one front."""
    import numpy as np

    from compare_fronts import paired_hypervolumes
    from pama import objectives as objmod

    objs = [objmod.get(o) for o in objectives]
    scores = np.array([p["scores"] for p in points], float)          # (points, objectives, prompts)
    r = paired_hypervolumes([scores], [o.lower for o in objs], [o.upper for o in objs], n_boot, seed)[0]
    return r["hv"], min(r["hv_low"], r["hv"]), max(r["hv_high"], r["hv"])


def spearman(xs: list[float], ys: list[float]) -> float:
    from scipy.stats import spearmanr

    if len(set(xs)) < 2 or len(set(ys)) < 2:
        return float("nan")
    return float(spearmanr(xs, ys).statistic)


def arm_summary(arm: str, points: list[dict], objectives: list[str], n_boot: int, minutes: float, steps: int) -> dict:
    """One table row: hypervolume with its interval, the ends' separation, p_1 against objective 1."""
    a, b = objectives[0], objectives[1]
    hv, hv_lo, hv_hi = hypervolume_ci(points, objectives, n_boot)
    ends = {tuple(round(x, 6) for x in p["preference"]): p for p in points}
    n = len(objectives)
    end_a, end_b = ends.get(tuple([1.0] + [0.0] * (n - 1))), ends.get(tuple([0.0, 1.0] + [0.0] * (n - 2)))
    sep_a = sep_b = float("nan")
    if end_a and end_b:
        sep_a = separation(end_a["values"][a], end_b["values"][a])
        sep_b = separation(end_b["values"][b], end_a["values"][b])
    rho = spearman([p["preference"][0] for p in points], [p["values"][a][0] for p in points])
    return {"arm": arm, "training minutes": round(minutes, 2), "steps": steps, "points": len(points),
            "HV": round(hv, 4), "HV 95% CI": f"[{hv_lo:.4f}, {hv_hi:.4f}]", f"sep {a}": round(sep_a, 2),
            f"sep {b}": round(sep_b, 2), "min sep": round(min(sep_a, sep_b), 2), f"Spearman p1~{a}": round(rho, 3),
            "KL": round(sum(p["kl"] for p in points) / len(points), 2),
            "EOS": round(sum(p["eos_fraction"] for p in points) / len(points), 2)}


def summarise(records: list[dict], objectives: list[str], n_boot: int) -> list[dict]:
    rows = []
    sweep = [r for r in records if r["kind"] == "sweep-point"]
    if sweep:
        points = [dict(r["eval"], preference=r["preference"]) for r in sweep]
        rows.append(arm_summary(f"sweep ×{len(sweep)}", points, objectives, n_boot,
                                sum(r["eval"]["minutes"] for r in sweep), sum(r["eval"]["step"] for r in sweep)))
    for r in records:
        if r["kind"] == "conditioned":
            ev = r["eval"]
            rows.append(arm_summary(f"conditioned-{r['form']}", ev["points"], objectives, n_boot, ev["minutes"],
                                    ev["step"]))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objectives", default="informativeness,conciseness")
    ap.add_argument("--minutes", type=float, default=10.0, help="training wall minutes per arm (the sweep splits "
                                                                 "them over its K adapters)")
    ap.add_argument("--sweep-points", type=int, default=5, help="K adapters of the sweep arm")
    ap.add_argument("--forms", nargs="+", default=["svd", "prefix"], choices=["svd", "prefix"],
                    help="conditioned arms: the SVD-LoRA gates and/or the preference prefix")
    ap.add_argument("--method", default="pama", choices=["pama", "morlhf"])
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="TrainConfig overrides for every arm (e.g. batch_size=8 lora_r=4)")
    ap.add_argument("--eval-samples", type=int, default=64)
    ap.add_argument("--eval-max-new-tokens", type=int, default=96)
    ap.add_argument("--eval-temperature", type=float, default=0.7)
    ap.add_argument("--eval-seed", type=int, default=1234)
    ap.add_argument("--bootstrap", type=int, default=1000, help="resamples of the prompts for the HV intervals")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tag", default="")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()

    os.environ.setdefault("PAMA_HOME", tempfile.mkdtemp(prefix="pama-cond-"))
    import torch

    from pama import models
    from pama.config import TrainConfig, from_dict
    from pama.evaluate import evaluate_at, evaluate_point
    from pama.pareto import conditioned_grid, preference_grid
    from pama.prompts import load_prompts

    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    overrides = parse_variant("arms:" + ",".join(args.set))[1]
    stem = "conditioned" + (f"-{args.tag}" if args.tag else "")
    log_path = RESULTS / f"{stem}.jsonl"
    RESULTS.mkdir(parents=True, exist_ok=True)
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()] \
        if args.resume and log_path.exists() else []
    if not args.resume:
        log_path.write_text("")
    settings = {"objectives": ", ".join(objectives), "training minutes per arm": args.minutes,
                "sweep adapters": args.sweep_points, "conditioned forms": ", ".join(args.forms),
                "method": args.method, "overrides": json.dumps(overrides), "eval prompts": args.eval_samples,
                "eval max new tokens": args.eval_max_new_tokens, "eval temperature": args.eval_temperature,
                "bootstrap resamples": args.bootstrap}
    print(header("One conditioned adapter vs a K-adapter sweep at equal training time", settings), flush=True)

    def append(rec: dict) -> None:
        records.append(rec)
        with open(log_path, "a") as fh:
            fh.write(json.dumps(rec, default=float) + "\n")

    prompts = load_prompts("builtin:heldout", limit=args.eval_samples)
    eval_kw = dict(seed=args.eval_seed, max_new_tokens=args.eval_max_new_tokens, batch_size=32,
                   temperature=args.eval_temperature)
    base_model, tok = models.load(args.model)
    torch.manual_seed(0)

    def row(res, base_d1):
        return dict(eval_row(res, base_d1), scores=res.scores.tolist())

    base = next((r for r in records if r["kind"] == "base"), None)
    if base is None:
        base = dict(kind="base", eval=row(evaluate_point(base_model, tok, objectives, prompts, **eval_kw), None))
        append(base)
    base_d1 = base["eval"]["distinct_1"]

    def config(**kw) -> TrainConfig:
        data = dict(overrides, objectives=objectives, method=args.method, steps=10_000, save_every=10_000,
                    model=args.model, **kw)
        return from_dict(TrainConfig, data, source="bench_conditioned").validate()

    def log(s: str) -> None:
        print(s, flush=True)

    done = {tuple(r["preference"]) for r in records if r["kind"] == "sweep-point"}
    for pref in preference_grid(len(objectives), args.sweep_points):
        if tuple(pref) in done:
            continue
        log(f"sweep point {pref}: {args.minutes / args.sweep_points:.2f} training minutes")

        def evaluate(model):
            return row(evaluate_point(model, tok, objectives, prompts, **eval_kw), base_d1)

        (ev,) = train_and_eval(config(preference=pref), args.minutes / args.sweep_points, 1, evaluate, log)
        append(dict(kind="sweep-point", preference=pref, eval=ev))

    grid = conditioned_grid(len(objectives))
    for form in args.forms:
        if any(r["kind"] == "conditioned" and r["form"] == form for r in records):
            continue
        log(f"conditioned ({form}): {args.minutes:.2f} training minutes, then {len(grid)} preferences")

        def evaluate_grid(model):
            points = [dict(row(evaluate_at(model, tok, objectives, prompts, p, **eval_kw), base_d1), preference=p)
                      for p in grid]
            middle = points[len(points) // 2]   # what train_and_eval logs: the uniform preference for two objectives
            return dict(middle, points=points, degenerate=any(p["degenerate"] for p in points))

        (ev,) = train_and_eval(config(conditioned=True, conditioning=form), args.minutes, 1, evaluate_grid, log)
        append(dict(kind="conditioned", form=form, eval=ev))

    rows = summarise(records, objectives, args.bootstrap)
    table = markdown_table(rows)
    b = base["eval"]["values"]
    base_line = "base model: " + ", ".join(f"{o} {b[o][0]:.3f} [{b[o][1]:.3f}, {b[o][2]:.3f}]" for o in objectives)
    print(table + "\n" + base_line)
    write_csv(f"{stem}.csv", rows)
    write_text(f"{stem}.md", header("One conditioned adapter vs a K-adapter sweep", settings) + "\n" + table + "\n"
               + base_line + "\n")


if __name__ == "__main__":
    main()
