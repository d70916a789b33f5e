"""How often each point of a sweep answers by echoing its prompt: the share of answers that copy a run of at least
K consecutive words of the prompt (relevance, an embedding similarity of answer and prompt, rewards restating).

    PAMA_HOME=/tmp/s19/h40 .venv/bin/python benchmarks/prompt_echo.py s43c1947cc6 [--words 6] [--relevance]
        [--tag front-lam1-40]

Reads every stored generation of the sweep's points (the evaluation's 128 answers each, not the 16 a shipped demo
keeps) from the store ($PAMA_HOME or --db). Prints a markdown table; with --tag also writes
benchmarks/results/echo-TAG.md.

With ``--relevance`` each point also gets its stored relevance, the same answers rescored with
``relevance:echo=K`` (copied K-word prompt runs earn nothing), and that score length-controlled
(``pama.lengthcontrol.control_front`` over the sweep's points, base as reference), each with its 95% bootstrap
interval: is the relevance end still more relevant once restating the prompt is worth nothing?
"""

from __future__ import annotations

import argparse

from common import fmt_ci, header, markdown_table, write_text

from pama.lengthcontrol import control_front
from pama.objectives import copied_share
from pama.objectives import get as get_objective
from pama.stats import bootstrap_ci


def copies_prompt(prompt: str, text: str, k: int = 6) -> bool:
    """True when ``text`` contains k consecutive words of ``prompt`` (case and punctuation ignored)."""
    return copied_share(prompt, text, k) > 0


def echo_rows(store, sweep_id: str, k: int, relevance: bool = False) -> list[dict]:
    rows, samples, base = [], {}, None
    guarded = get_objective(f"relevance:echo={k}") if relevance else None
    for p in store.point_records(sweep_id=sweep_id):
        gens = store.generations(p.id)
        n = sum(copies_prompt(g["prompt"], g["text"], k) for g in gens)
        pref = ", ".join(f"{w:g}" for w in p.preference) if p.preference else "-"
        row = {"point": p.id, "kind": p.kind, "preference": pref, "answers": len(gens),
               f"copy >= {k} prompt words": n, "share": round(n / len(gens), 3) if gens else None}
        if guarded is not None and gens:
            texts = [g["text"] for g in gens]
            scores = guarded.score([g["prompt"] for g in gens], texts)
            samples[p.id] = ([scores], texts)
            base = p.id if p.kind == "base" else base
            row["relevance"] = fmt_ci(*bootstrap_ci([g["scores"]["relevance"] for g in gens]))
            row[f"relevance:echo={k}"] = fmt_ci(*bootstrap_ci(scores))
        rows.append(row)
    if samples:
        ctl = control_front(samples, ["guarded"], {"guarded": False}, base=base)
        for row in rows:
            if row["point"] in samples:
                row[f"relevance:echo={k}, length-controlled"] = fmt_ci(*ctl.values[row["point"]]["guarded"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep")
    ap.add_argument("--words", type=int, default=6, help="the run of consecutive prompt words that counts as an echo")
    ap.add_argument("--db", default=None, help="store URL (default: $PAMA_HOME's)")
    ap.add_argument("--relevance", action="store_true",
                    help="also rescore relevance with echo=WORDS (raw and length-controlled, with intervals)")
    ap.add_argument("--tag", default=None)
    args = ap.parse_args()
    from pama.store import Store

    store = Store(args.db)
    text = header(f"Prompt echo: sweep {args.sweep}") + "\n" + markdown_table(
        echo_rows(store, args.sweep, args.words, args.relevance))
    print(text)
    if args.tag:
        write_text(f"echo-{args.tag}.md", text)


if __name__ == "__main__":
    main()
