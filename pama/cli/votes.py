"""`votes`: a sweep's blind votes, their Bradley-Terry scores, and exports."""
from __future__ import annotations

from pathlib import Path

from .. import report
from ..store import Store


def register(sub, add) -> None:
    p = add("votes", run, "Blind votes of a sweep: per point votes, win rate and Bradley-Terry score with its "
                          "interval; export the votes (cast them on the app's Compare page, blind mode).")
    p.add_argument("sweep_id", nargs="?", default=None, help="the sweep (omit to list sweeps with their vote counts)")
    p.add_argument("--export", choices=["csv", "json"], default=None,
                   help="write the votes (csv: one row per vote; json: votes and scores)")
    p.add_argument("--out", default=None, help="export path (default: votes-<sweep id>.<format>)")


def format_votes(rows: list[dict], n_votes: int) -> str:
    """The scores table printed by `votes SWEEP_ID`: best first, points without votes last."""
    counted = sum(r["wins"] + r["losses"] + r["ties"] for r in rows) // 2
    lines = [f"{n_votes} votes ({counted} counted; both_bad is left out of the fit). Bradley-Terry score = "
             "log-strength, mean 0; 95% bootstrap interval.",
             f"{'point':<13} {'label':<34} {'votes':>5} {'W-L-T':>9} {'bad':>4} {'win rate':>8}  score [95% interval]"]
    lines.append("-" * len(lines[-1]))
    for r in sorted(rows, key=lambda r: (r["bt_score"] is None, -(r["bt_score"] or 0))):
        wr = "" if r["win_rate"] is None else f"{r['win_rate']:.0%}"
        sc = "" if r["bt_score"] is None else f"{r['bt_score']:+.2f} [{r['bt_low']:+.2f}, {r['bt_high']:+.2f}]"
        lines.append(f"{r['point_id']:<13} {str(r['label'])[:34]:<34} {r['votes']:>5} "
                     f"{r['wins']:>3}-{r['losses']}-{r['ties']:<3} {r['both_bad']:>4} {wr:>8}  {sc}")
    return "\n".join(lines)


def run(args) -> int:
    store = Store(args.db)
    if not args.sweep_id:
        sweeps = store.sweep_records()
        if not sweeps:
            print("no sweeps yet, so no votes: import the demo front with `python -m pama setup`")
        for s in sweeps:
            print(f"{s.id:<13} {len(store.votes(sweep_id=s.id)):>5} votes  {s.name}")
        return 0
    if store.sweep_record(args.sweep_id) is None:
        raise ValueError(f"no sweep {args.sweep_id!r}; `python -m pama votes` lists them")
    votes = report.votes_rows(store, args.sweep_id)
    print(f"sweep {args.sweep_id}: " + format_votes(report.vote_score_rows(store, args.sweep_id, votes), len(votes)))
    if args.export:
        out = Path(args.out or f"votes-{args.sweep_id}.{args.export}")
        out.write_text(report.votes_csv(votes) if args.export == "csv" else report.votes_json(store, args.sweep_id),
                       encoding="utf-8")
        print(f"\nwrote {out}")
    return 0
