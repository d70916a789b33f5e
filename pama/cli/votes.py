"""`votes`: a sweep's blind votes, their Bradley-Terry scores, and exports."""
from __future__ import annotations

from pathlib import Path

from .. import objectives as objmod
from .. import report
from .. import votefit
from ..store import Store


def register(sub, add) -> None:
    p = add("votes", run, "Blind votes of a sweep: per point votes, win rate and Bradley-Terry score with its "
                          "interval; export the votes (cast them on the app's Compare page, blind mode).")
    p.add_argument("sweep_id", nargs="?", default=None, help="the sweep (omit to list sweeps with their vote counts)")
    p.add_argument("--export", choices=["csv", "json"], default=None,
                   help="write the votes (csv: one row per vote; json: votes and scores)")
    p.add_argument("--out", default=None, help="export path (default: votes-<sweep id>.<format>)")
    p.add_argument("--fit", action="store_true",
                   help="fit the voter's trade-off: preference weights over the objectives with 95%% bootstrap "
                        "intervals, the length coefficient, cross-validated accuracy against length alone and the "
                        "points' scores, and the votes the objective scores predicted worst (docs/votes.md)")
    p.add_argument("--voter", default=None, help="with --fit: only this voter's votes (default: everyone's)")
    p.add_argument("--length", choices=list(votefit.LENGTH_MODES), default="auto",
                   help="with --fit: the answer-length nuisance term (auto: on unless an objective measures length)")
    p.add_argument("--rescore", action="store_true",
                   help="with --fit: score responses that were generated for a ballot (no stored scores) with the "
                        "objectives now (may load reward models); without it such votes are left out")
    p.add_argument("--top", type=int, default=5, help="with --fit: how many disagreements to print")
    p.add_argument("--seed", type=int, default=0, help="with --fit: the bootstrap's and the folds' seed")


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


def _short(text: str | None, n: int = 400) -> str:
    t = " ".join((text or "").split())
    return t if len(t) <= n else t[:n - 1] + "…"


def format_fit(a: votefit.Analysis) -> str:
    """The trade-off printed by `votes SWEEP --fit`: weights with intervals, κ, the length term, the accuracies and
    the disagreements with both texts."""
    who = f"voter {a.voter!r}" if a.voter else "all voters"
    rows = a.rows
    head = (f"Trade-off of {who}: {len(rows)} scored votes ({rows.unscored} on responses without stored scores left "
            f"out{'; --rescore scores them' if rows.unscored else ''}; {rows.both_bad} both_bad not fitted).")
    f = a.fit
    if f is None:
        return head + f"\nToo few scored votes to fit (at least {votefit.MIN_VOTES})."
    lines = [head, f"weights w (95% bootstrap interval): {votefit.weights_text(f)}",
             f"kappa (how strongly the objectives drive the votes): {f.kappa:.2f} "
             f"[{f.kappa_interval[0]:.2f}, {f.kappa_interval[1]:.2f}]"]
    if f.gamma is None:
        lines.append(f"length term: {f.length_note}")
    else:
        share = f.length_share()
        lines.append(f"length coefficient (per unit of log words difference): {f.gamma:+.2f} "
                     f"[{f.gamma_interval[0]:+.2f}, {f.gamma_interval[1]:+.2f}]"
                     + ("" if share is None else f"; length carries {share:.0%} of the fitted preference"))
    if a.accuracy is None:
        lines.append("held-out accuracy: too few decisive votes to cross-validate "
                     f"(at least {2 * votefit.FOLDS})")
    else:
        acc = a.accuracy
        lines.append(f"held-out accuracy ({acc['folds']}-fold, {acc['n']} decisive votes; chance 50%): "
                     f"objectives{' + length' if f.gamma is not None else ''} {acc['model']:.0%} · objectives alone "
                     f"{acc['objectives']:.0%} · length alone {acc['length']:.0%} · points' BT scores {acc['bt']:.0%}")
    if a.disagreements:
        lines.append(f"\nWhere the objective scores and the votes disagree most ({len(a.disagreements)}):")
    for k, d in enumerate(a.disagreements, 1):
        sa = ", ".join(f"{o} {v:.3f}" for o, v in d["scores_a"].items())
        sb = ", ".join(f"{o} {v:.3f}" for o, v in d["scores_b"].items())
        lines += [f"{k}. chose {d['chosen'].upper()}; the scores gave it {d['p_scores']:.0%} (vote {d['vote_id']}, "
                  f"voter {d['voter'] or '-'})",
                  f"   prompt: {_short(d['prompt'], 200)}",
                  f"   A [{d['point_a']}; {sa}; {d['words_a']} words]: {_short(d['text_a'])}",
                  f"   B [{d['point_b']}; {sb}; {d['words_b']} words]: {_short(d['text_b'])}"]
    return "\n".join(lines)


def fit_sweep(store: Store, sweep_id: str, *, voter: str | None = None, length: str = "auto", rescore: bool = False,
              seed: int = 0, top: int = 5) -> votefit.Analysis:
    """The sweep's votes (one voter's, or everyone's) fitted to its objectives' scores."""
    sweep = store.sweep_record(sweep_id)
    objectives = list(sweep.objectives)
    specs = votefit.objective_specs(objectives, store.run_records(sweep_id=sweep_id))
    votes = store.votes(sweep_id=sweep_id)
    ids = {v[k] for v in votes for k in ("point_a", "point_b")}
    gens = {pid: store.generations(pid) for pid in ids}
    used = [o for o in objectives if o in specs]
    score_texts = (lambda prompts, texts: objmod.score_all(used, prompts, texts)) if rescore else None
    return votefit.analyse(votes, gens, used, specs, voter=voter, length=length, score_texts=score_texts,
                           seed=seed, top=top)


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
    if args.fit and args.voter and args.voter.strip() not in votefit.voters(votes):
        raise ValueError(f"no votes by {args.voter!r} in this sweep; voters: "
                         f"{', '.join(votefit.voters(votes)) or 'none named'}")
    print(f"sweep {args.sweep_id}: " + format_votes(report.vote_score_rows(store, args.sweep_id, votes), len(votes)))
    if args.fit:
        print("\n" + format_fit(fit_sweep(store, args.sweep_id, voter=args.voter, length=args.length,
                                           rescore=args.rescore, seed=args.seed, top=args.top)))
    if args.export:
        out = Path(args.out or f"votes-{args.sweep_id}.{args.export}")
        out.write_text(report.votes_csv(votes) if args.export == "csv" else report.votes_json(store, args.sweep_id),
                       encoding="utf-8")
        print(f"\nwrote {out}")
    return 0
