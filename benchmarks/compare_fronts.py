"""Two stored fronts evaluated on the same prompts, compared with a paired bootstrap: which covers more?

    .venv/bin/python benchmarks/compare_fronts.py --front NAME=DB_URL::SWEEP_ID --front NAME=DB_URL::SWEEP_ID
        [--kinds adapter,conditioned] [--preferences "1,0 0.5,0.5 0,1"] [--bootstrap 2000] [--tag T]

Each front is the trained points (``--kinds``) of one sweep in one store, or only those at ``--preferences`` (to
compare fronts point for point when one has more points); every point must hold its per-prompt scores
(all of them: a shipped demo's store.json keeps only 16 per point, so this reads the stores the demos were made in).
The fronts must have been evaluated on the same prompts (the script checks prompt texts and indices), so the prompts
are resampled jointly for every point of both fronts: the interval of the difference is then that of the difference,
not two overlapping intervals. Hypervolume as the sweeps' summaries compute it (objectives normalised by their bounds,
reference 0). Written to benchmarks/results/fronts[-TAG].md.
"""
from __future__ import annotations

import argparse

import numpy as np

from common import header, markdown_table, write_text


def _same(preference, q) -> bool:
    return preference is not None and len(preference) == len(q) and np.allclose(preference, q)


def front_scores(url: str, sweep_id: str, kinds: list[str], preferences: list[list[float]] | None = None
                 ) -> tuple[np.ndarray, list[str], list[tuple]]:
    """(points × objectives × prompts) scores of the sweep's trained points, its objectives, and the (index, text) of
    the prompts in index order."""
    from pama.store import Store

    store = Store(url, create=False)
    try:
        objectives = store.get_sweep(sweep_id)["objectives"]
        points = [p for p in store.points(sweep_id=sweep_id) if p["kind"] in kinds
                  and (preferences is None or any(_same(p["preference"], q) for q in preferences))]
        if not points:
            raise SystemExit(f"no points of kind {kinds} in sweep {sweep_id} of {url}")
        scores, prompts = [], None
        for p in points:
            gens = store.generations(p["id"])
            these = [(g["prompt_index"], g["prompt"]) for g in gens]
            if prompts is not None and these != prompts:
                raise SystemExit(f"point {p['id']} was evaluated on other prompts than the sweep's first point")
            prompts = these
            scores.append([[g["scores"][o] for g in gens] for o in objectives])
    finally:
        store.close()
    return np.array(scores, float), objectives, prompts


def paired_hypervolumes(fronts: list[np.ndarray], lower, upper, n_boot: int, seed: int = 0) -> list[dict]:
    """Each front's HV of its mean scores, with a 95% percentile-bootstrap interval, and each front's difference to
    the first, from one joint resample of the prompts (pure: arrays in, numbers out)."""
    from pama import pareto

    lo, hi = np.asarray(lower, float), np.asarray(upper, float)
    ref = np.zeros(len(lo))

    def hv(scores: np.ndarray, idx=slice(None)) -> float:
        return pareto.hypervolume(pareto.normalise(scores[..., idx].mean(-1), lo, hi), ref)

    n = fronts[0].shape[-1]
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_boot, n))
    boot = np.array([[hv(f, i) for f in fronts] for i in draws]).reshape(len(draws), len(fronts))
    values = [hv(f) for f in fronts]
    out = []
    for k, value in enumerate(values):
        diff = value - values[0]
        low, high = np.quantile(boot[:, k], [0.025, 0.975]) if n_boot else (value, value)   # no draws: no interval
        dlow, dhigh = np.quantile(boot[:, k] - boot[:, 0], [0.025, 0.975]) if n_boot else (diff, diff)
        out.append(dict(hv=value, hv_low=float(low), hv_high=float(high), diff=diff, diff_low=float(dlow),
                        diff_high=float(dhigh)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--front", action="append", required=True, help="NAME=DB_URL::SWEEP_ID (two or more)")
    ap.add_argument("--kinds", default="adapter,conditioned")
    ap.add_argument("--preferences", default="", help="only the points at these preferences (space-separated)")
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    from pama import objectives as objmod

    names, fronts, objectives, prompts = [], [], None, None
    prefs = [[float(x) for x in q.split(",")] for q in args.preferences.split()] or None
    first = args.front[0].partition("=")[0]
    for spec in args.front:
        name, _, rest = spec.partition("=")
        url, _, sweep = rest.rpartition("::")
        scores, objs, these = front_scores(url, sweep, args.kinds.split(","), prefs)
        if objectives is not None and (objs != objectives or these != prompts):
            raise SystemExit(f"{name}: its objectives or prompts differ from the first front's: not comparable")
        objectives, prompts = objs, these
        names.append(f"{name} ({len(scores)} points, sweep {sweep})")
        fronts.append(scores)
    objs = [objmod.get(o) for o in objectives]
    rows = paired_hypervolumes(fronts, [o.lower for o in objs], [o.upper for o in objs], args.bootstrap)
    table = [dict(front=n, hypervolume=f"{r['hv']:.4f} [{r['hv_low']:.4f}, {r['hv_high']:.4f}]",
                  **{f"minus {first}": f"{r['diff']:+.4f} [{r['diff_low']:+.4f}, {r['diff_high']:+.4f}]"})
             for n, r in zip(names, rows)]
    text = header("Fronts compared on the same prompts (paired bootstrap)",
                  {"objectives": ", ".join(objectives), "prompts": fronts[0].shape[-1], "bootstrap": args.bootstrap,
                   "points": f"at {args.preferences}" if args.preferences else "all trained points"})
    text += "\n" + markdown_table(table)
    print(text)
    print("written to", write_text(f"fronts{'-' + args.tag if args.tag else ''}.md", text))


if __name__ == "__main__":
    main()
