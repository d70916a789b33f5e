"""Why the ends of a front meet with longer training: the KL penalty against the objectives' rewards, step by step.

    PAMA_HOME=/tmp/s22/conda256 .venv/bin/python benchmarks/kl_trace.py r9ed9db4216 [RUN ...] [--block 32]
        [--db URL] [--tag conditioned-256]

Reads each run's stored training metrics (no model, no CPU): per block of steps, the KL coefficient β, the batch
KL (nats per answer), the penalty β·KL an answer pays on average, and each objective's per-answer reward spread
(its standard deviation in the batch). The objectives steer an update only as far as their spread is large next to
the penalty's; with an adaptive β under Noon PPO (negative advantages dropped, so the penalty cannot push the policy
back) the KL stays above its target and β ratchets up (docs/learnability.md section 24). Prints a markdown table;
with --tag also writes benchmarks/results/kltrace-TAG.md and .html (β·KL and the reward spreads against steps).
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from common import header, markdown_table, write_text


def trace_rows(metrics: list[dict], block: int) -> list[dict]:
    """Per block of ``block`` steps, the mean of each metric, as table rows (β·KL from the per-step product)."""
    by_step: dict[int, dict[str, float]] = defaultdict(dict)
    for m in metrics:
        by_step[m["step"]][m["key"]] = m["value"]
    objectives = sorted({k.split("/")[1] for s in by_step.values() for k in s if k.startswith("rewards/") and
                         k.endswith("/std")})
    blocks: dict[int, list[dict[str, float]]] = defaultdict(list)
    for step, vals in sorted(by_step.items()):
        if "beta" in vals and "kl" in vals:
            blocks[(step - 1) // block].append(vals)
    rows = []
    for b, steps in sorted(blocks.items()):
        def mean(key, steps=steps):
            xs = [s[key] for s in steps if key in s]
            return sum(xs) / len(xs) if xs else float("nan")
        row = {"steps": f"{b * block + 1}-{b * block + len(steps)}", "beta": round(mean("beta"), 3),
               "KL": round(mean("kl"), 2),
               "beta*KL": round(sum(s["beta"] * s["kl"] for s in steps) / len(steps), 3)}
        for o in objectives:
            row[f"{o} mean"] = round(mean(f"rewards/{o}/mean"), 3)
            row[f"{o} sd"] = round(mean(f"rewards/{o}/std"), 3)
        row["tokens"] = round(mean("response_length"), 1)
        rows.append(row)
    return rows


def figure(traces: dict[str, list[dict]]):
    import plotly.graph_objects as go

    fig = go.Figure()
    for run, rows in traces.items():
        x = [int(r["steps"].split("-")[1]) for r in rows]
        fig.add_scatter(x=x, y=[r["beta*KL"] for r in rows], mode="lines+markers", name=f"{run}: β·KL")
        for key in [k for k in rows[0] if k.endswith(" sd")]:
            fig.add_scatter(x=x, y=[r[key] for r in rows], mode="lines", line={"dash": "dot"},
                            name=f"{run}: {key[:-3]} reward spread (sd)")
    fig.update_layout(title="KL penalty per answer vs the objectives' reward spread", xaxis_title="training step",
                      yaxis_title="reward units")
    return fig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--block", type=int, default=16, help="steps per row")
    ap.add_argument("--db", default=None, help="store URL (default: $PAMA_HOME's)")
    ap.add_argument("--tag", default=None)
    args = ap.parse_args()
    from pama.store import Store

    store = Store(args.db, create=False)
    traces = {run: trace_rows(store.metrics(store.require_run(run)["id"]), args.block) for run in args.runs}
    text = header("KL penalty vs reward spread") + "".join(
        f"\n### {run}\n\n{markdown_table(rows)}\n" for run, rows in traces.items())
    print(text)
    if args.tag:
        write_text(f"kltrace-{args.tag}.md", text)
        write_text(f"kltrace-{args.tag}.html", figure(traces).to_html(include_plotlyjs="cdn"))


if __name__ == "__main__":
    main()
