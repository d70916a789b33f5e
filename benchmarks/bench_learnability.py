"""How much visible trade-off each CPU minute buys: train the two extreme preferences of an objective pair for the
same wall time, evaluate both ends on the same held-out prompts, and report how far apart they are.

    .venv/bin/python benchmarks/bench_learnability.py [--pairs informativeness,conciseness sentiment,length ...]
        [--minutes 5] [--evals 2] [--eval-samples 64] [--eval-max-new-tokens 96]
        [--variant NAME:key=value,key=value ...] [--tag T] [--resume]
        [--eval-steps 15,30,60,120]   # train to fixed step counts instead of wall minutes (stability curves)

For each variant (a set of TrainConfig overrides on top of the defaults; ``default`` = none), each pair (a, b) and
each end (preference (1, 0) and (0, 1)) one PAMA run is trained in-process for ``--minutes`` of training wall time
(evaluation time is not counted), and evaluated ``--evals`` times along the way (evenly spaced in training time) with
``pama.evaluate.evaluate_point``: the same prompts, sampling seeds and lengths for every run and for the base model.

With ``--eval-steps`` each end trains to the largest step count and is evaluated at each listed step: the same
steps for every run whatever else runs on the CPU (the stability curve: does the separation at 4N steps keep 80% of
the separation at N?).

Columns "1st" / "2nd" are the pair's objectives in the order given. Separation of objective i at a checkpoint = (mean_i at i's own end − mean_i at the other end) / the mean of the two
95% bootstrap half-widths. Above 2 the two intervals do not overlap, with the end that prefers i on top.

The length-controlled separation is the same figure on length-controlled scores (``pama.lengthcontrol``: each
objective regressed on log(1 + words) over the base model's and both ends' samples pooled, every sample moved to
the base model's mean length): a pair whose ends differ only in how long they talk has controlled separations near
0. ``rho_len`` is Spearman's ρ of each objective with answer length over both ends' samples. An objective that is
length itself (conciseness, length) has no controlled score.

Each evaluation also reports the KL to the base (nats per response), distinct-2, the share of responses that ended
on EOS, and a ``degenerate`` flag: KL > 10, fewer than half the base model's distinct-1, or less than 60% letters
among the non-space characters (emoji strings, symbol runs).

Rows are appended to benchmarks/results/learnability[-TAG].jsonl as they come; ``--resume`` skips the runs already
there (a run cut off mid-way is redone). The summary goes to learnability[-TAG].md / .csv and a plotly figure of
separation against training minutes to learnability[-TAG].html.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("PAMA_OMP_WAIT", "default")  # it trains in-process: the wait policy of `pama train`

from common import RESULTS, header, markdown_table, write_csv, write_text  # noqa: E402

DEFAULT_PAIRS = ["informativeness,conciseness", "sentiment,length", "relevance,readability"]


def parse_variant(text: str) -> tuple[str, dict]:
    """``name:key=value,key=value`` → (name, overrides); list values use ``+``: target_modules=q_proj+v_proj."""
    name, _, rest = text.partition(":")
    overrides = {}
    for item in filter(None, (x.strip() for x in rest.split(","))):
        key, _, value = item.partition("=")
        overrides[key] = value.split("+") if "+" in value else value
    return name or "default", overrides


def separation(own, other) -> float:
    """(own end's mean − other end's mean) / mean 95% half-width, from (mean, ci_low, ci_high) triples: > 2 means
    the intervals do not overlap."""
    hw = ((own[2] - own[1]) + (other[2] - other[1])) / 4
    return (own[0] - other[0]) / hw if hw > 0 else float("inf")


def letter_share(texts: list[str]) -> float:
    chars = [c for t in texts for c in t if not c.isspace()]
    return sum(c.isalpha() for c in chars) / len(chars) if chars else 0.0


def eval_row(res, base_d1: float | None) -> dict:
    from pama.lengthcontrol import word_lengths

    letters = letter_share(res.texts)
    degenerate = res.kl > 10 or letters < 0.6 or (base_d1 is not None and res.distinct_1 < 0.5 * base_d1)
    return dict(values=res.values, kl=res.kl, mean_length=res.mean_length, distinct_1=res.distinct_1,
                distinct_2=res.distinct_2, eos_fraction=res.eos_fraction, letters=letters, degenerate=degenerate,
                examples=res.texts[:3], scores=[[round(float(v), 5) for v in row] for row in res.scores],
                words=[int(w) for w in word_lengths(res.texts)])


def train_and_eval(cfg, minutes: float, evals: int, evaluate, log, eval_steps: list[int] | None = None) -> list[dict]:
    """Train ``cfg`` for ``minutes`` of training time, evaluating at evenly spaced times (or, with ``eval_steps``,
    to the last of those step counts, evaluating at each); returns eval rows."""
    from pama.store import Store
    from pama.trainer import Trainer

    trainer = Trainer(cfg, Store(), progress=False)
    model = trainer.accelerator.unwrap_model(trainer.model)
    marks = sorted(eval_steps) if eval_steps else [minutes * 60 * (i + 1) / evals for i in range(evals)]
    spent, rows, history = 0.0, [], []
    while marks:
        trainer.step += 1
        t0 = time.perf_counter()
        m = trainer.train_step(trainer.step)
        spent += time.perf_counter() - t0
        history.append({k: round(v, 4) for k, v in m.items() if not k.startswith("time/")})
        log(f"  step {trainer.step} ({spent / 60:.1f} min) "
            + " ".join(f"{k.split('/')[1][:6]}={v:.3f}" for k, v in m.items() if k.endswith("/mean"))
            + f" kl={m['kl']:.2f} beta={m['beta']:.3f} len={m['response_length']:.0f} eos={m['eos_fraction']:.2f}")
        if (trainer.step if eval_steps else spent) >= marks[0]:
            marks.pop(0)
            row = evaluate(model)
            row.update(step=trainer.step, minutes=spent / 60, samples=trainer.step * cfg.batch_size,
                       train_metrics=history[-5:])
            rows.append(row)
            log(f"  eval at {spent / 60:.1f} min: " + json.dumps({k: round(v[0], 3) for k, v in row["values"].items()})
                + f" kl={row['kl']:.2f} eos={row['eos_fraction']:.2f} degenerate={row['degenerate']}")
    return rows


def length_controlled(base: dict, ea: dict, eb: dict, objs: list[str]) -> tuple[dict, dict]:
    """Per objective: the length-controlled separation of the two ends (None for an objective that is length, or
    rows without per-sample scores) and Spearman's ρ with answer length over both ends' samples."""
    from pama import objectives as objmod
    from pama.lengthcontrol import control_front

    if not all("scores" in r for r in (base, ea, eb)):
        return {o: None for o in objs}, {o: None for o in objs}
    texts = {k: [" ".join(["w"] * n) for n in r["words"]] for k, r in (("base", base), ("a", ea), ("b", eb))}
    is_len = {o: objmod.get(o).measures_length for o in objs}
    cf = control_front({k: (r["scores"], texts[k]) for k, r in (("base", base), ("a", ea), ("b", eb))}, objs, is_len,
                       base="base")
    ends = ("a", "b")
    sep = {}
    for i, o in enumerate(objs):
        own, other = cf.values[ends[i]][o], cf.values[ends[1 - i]][o]
        sep[o] = None if own is None else round(separation(own, other), 2)
    pooled = control_front({k: (r["scores"], texts[k]) for k, r in (("a", ea), ("b", eb))}, objs, is_len)
    return sep, {o: None if pooled.rho[o] != pooled.rho[o] else round(pooled.rho[o], 2) for o in objs}


def summarise(records: list[dict]) -> list[dict]:
    """One row per (variant, pair, checkpoint): the separation of each objective between the two ends, raw and
    length-controlled."""
    by = {}
    for r in records:
        if r["kind"] == "run":
            by.setdefault((r["variant"], r["pair"]), {})[r["end"]] = r
    bases = {r["pair"]: r for r in records if r["kind"] == "base"}
    rows = []
    for (variant, pair), ends in by.items():
        if set(ends) != {0, 1}:
            continue
        a, b = pair.split(",")
        for ea, eb in zip(ends[0]["evals"], ends[1]["evals"]):
            sa, sb = separation(ea["values"][a], eb["values"][a]), separation(eb["values"][b], ea["values"][b])
            lc, rho = length_controlled(bases.get(pair, {}), ea, eb, [a, b])
            lc_text = {f"lc sep {k}": ("is length" if lc[o] is None and "scores" in ea else lc[o])
                       for k, o in (("1st", a), ("2nd", b))}
            rows.append(dict(variant=variant, pair=pair, minutes=round((ea["minutes"] + eb["minutes"]) / 2, 2),
                             steps=ea["step"], **{"sep 1st": round(sa, 2), "sep 2nd": round(sb, 2)},
                             min_sep=round(min(sa, sb), 2), **lc_text,
                             rho_len=" / ".join("-" if rho[o] is None else f"{rho[o]:+.2f}" for o in (a, b)),
                             length=f"{ea['mean_length']:.0f} / {eb['mean_length']:.0f}",
                             kl=f"{ea['kl']:.1f} / {eb['kl']:.1f}", eos=f"{ea['eos_fraction']:.2f} / {eb['eos_fraction']:.2f}",
                             distinct_2=f"{ea['distinct_2']:.2f} / {eb['distinct_2']:.2f}",
                             degenerate=ea["degenerate"] or eb["degenerate"]))
    return rows


def _min_lc(row: dict) -> float | None:
    """The smaller length-controlled separation of a row's objectives that are not length (None if none)."""
    vals = [v for k, v in row.items() if k.startswith("lc sep ") and isinstance(v, (int, float))]
    return min(vals) if vals else None


def plot(rows: list[dict], path, by_steps: bool = False) -> None:
    """Separation (the smaller of the two objectives; dashed: length-controlled) against training minutes or
    steps."""
    import plotly.graph_objects as go

    xkey = "steps" if by_steps else "minutes"
    fig = go.Figure()
    for key in dict.fromkeys((r["variant"], r["pair"]) for r in rows):
        pts = [r for r in rows if (r["variant"], r["pair"]) == key]
        fig.add_trace(go.Scatter(x=[0] + [r[xkey] for r in pts], y=[0] + [r["min_sep"] for r in pts],
                                 mode="lines+markers", name=f"{key[1]} ({key[0]})"))
        lc = [(r[xkey], _min_lc(r)) for r in pts if _min_lc(r) is not None]
        if lc:
            fig.add_trace(go.Scatter(x=[0] + [x for x, _ in lc], y=[0] + [y for _, y in lc], mode="lines+markers",
                                     line_dash="dash", name=f"{key[1]} ({key[0]}), length-controlled"))
    fig.add_hline(y=2, line_dash="dot", annotation_text="intervals stop overlapping")
    fig.update_layout(title="Separation of the two ends (the smaller of the two objectives) vs training "
                            + ("steps" if by_steps else "minutes"),
                      xaxis_title="PPO steps per end" if by_steps else "training wall minutes per end (2 CPU cores)",
                      yaxis_title="separation (units of the 95% half-width)")
    fig.write_html(path, include_plotlyjs="cdn")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", nargs="+", default=DEFAULT_PAIRS)
    ap.add_argument("--variant", nargs="+", default=["default"], help="NAME:key=value,... TrainConfig overrides")
    ap.add_argument("--minutes", type=float, default=5.0, help="training wall minutes per end")
    ap.add_argument("--evals", type=int, default=2, help="evaluations per run, evenly spaced in training time")
    ap.add_argument("--eval-samples", type=int, default=64)
    ap.add_argument("--eval-max-new-tokens", type=int, default=96)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--eval-steps", default="",
                    help="comma-separated step counts: train each end to the last, evaluate at each (overrides --minutes)")
    ap.add_argument("--eval-prompts", default="builtin:heldout",
                    help="held-out prompt source for every evaluation (builtin:premise-heldout with a variant's "
                         "prompts=builtin:premise-train for the negative-premise pair)")
    ap.add_argument("--ends", default="0,1",
                    help="which ends to train: 0 = the pair's first objective's end, 1 = the second's (one end "
                         "alone, e.g. to check it across seeds with variants that set seed=)")
    ap.add_argument("--tag", default="")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    eval_steps = [int(x) for x in args.eval_steps.split(",") if x.strip()] or None
    ends = [int(x) for x in args.ends.split(",") if x.strip()]
    if not ends or any(e not in (0, 1) for e in ends):
        ap.error(f"--ends takes 0, 1 or 0,1, got {args.ends!r}")

    os.environ.setdefault("PAMA_HOME", tempfile.mkdtemp(prefix="pama-learn-"))
    import torch

    from pama import models
    from pama.config import TrainConfig, from_dict
    from pama.evaluate import evaluate_point
    from pama.prompts import load_prompts

    stem = "learnability" + (f"-{args.tag}" if args.tag else "")
    log_path = RESULTS / f"{stem}.jsonl"
    RESULTS.mkdir(parents=True, exist_ok=True)
    records = [json.loads(line) for line in log_path.read_text().splitlines()] if args.resume and log_path.exists() \
        else []
    if not args.resume:
        log_path.write_text("")
    done = {(r["variant"], r["pair"], r["end"]) for r in records if r["kind"] == "run"}
    print(header("Learnability: separation of a pair's two ends per CPU minute",
                 {"minutes per end": args.minutes, "eval steps": args.eval_steps or "-", "evals per run": args.evals, "eval prompts": f"{args.eval_samples} of {args.eval_prompts}",
                  "eval max new tokens": args.eval_max_new_tokens}), flush=True)

    def append(rec: dict) -> None:
        records.append(rec)
        with open(log_path, "a") as fh:
            fh.write(json.dumps(rec, default=float) + "\n")

    prompts = load_prompts(args.eval_prompts, limit=args.eval_samples)
    base_model, tok = models.load(args.model)
    torch.manual_seed(0)
    for variant in map(parse_variant, args.variant):
        for pair in args.pairs:
            objs = pair.split(",")

            def evaluate(model, objs=objs):
                res = evaluate_point(model, tok, objs, prompts, max_new_tokens=args.eval_max_new_tokens,
                                     batch_size=32)
                return eval_row(res, base_d1)

            # rows written before --eval-prompts existed were evaluated on builtin:heldout
            base = next((r for r in records if r["kind"] == "base" and r["pair"] == pair
                         and r.get("eval_prompts", "builtin:heldout") == args.eval_prompts), None)
            if base is None:
                base = dict(kind="base", pair=pair, eval_prompts=args.eval_prompts, **eval_row(evaluate_point(
                    base_model, tok, objs, prompts, max_new_tokens=args.eval_max_new_tokens, batch_size=32), None))
                append(base)
            base_d1 = base["distinct_1"]
            for end in ends:
                if (variant[0], pair, end) in done:
                    continue
                data = dict(variant[1], objectives=objs, preference=[1.0, 0.0] if end == 0 else [0.0, 1.0],
                            method="pama", steps=10_000, save_every=10_000, model=args.model)
                cfg = from_dict(TrainConfig, data, source=f"variant {variant[0]}").validate()
                print(f"{variant[0]} {pair} end {objs[end]}: {json.dumps(variant[1])}", flush=True)
                evals = train_and_eval(cfg, args.minutes, args.evals, evaluate, lambda s: print(s, flush=True),
                                       eval_steps)
                append(dict(kind="run", variant=variant[0], overrides=variant[1], pair=pair, end=end, evals=evals,
                            config=cfg.to_dict()))

    rows = summarise(records)
    table = markdown_table(rows)
    print(table)
    write_csv(f"{stem}.csv", rows)
    write_text(f"{stem}.md", header("Learnability", {"minutes per end": args.minutes}) + "\n" + table)
    if rows:
        plot(rows, RESULTS / f"{stem}.html", by_steps=bool(eval_steps))


if __name__ == "__main__":
    main()
