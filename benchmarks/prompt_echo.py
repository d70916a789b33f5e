"""How often each point of a sweep answers by echoing its prompt: the share of answers that copy a run of at least
K consecutive words of the prompt (relevance, an embedding similarity of answer and prompt, rewards restating).

    PAMA_HOME=/tmp/s19/h40 .venv/bin/python benchmarks/prompt_echo.py s43c1947cc6 [--words 6] [--tag front-lam1-40]

Reads every stored generation of the sweep's points (the evaluation's 128 answers each, not the 16 a shipped demo
keeps) from the store ($PAMA_HOME or --db). Prints a markdown table; with --tag also writes
benchmarks/results/echo-TAG.md.
"""

from __future__ import annotations

import argparse
import re

from common import header, markdown_table, write_text

WORD = re.compile(r"[a-z0-9']+")


def copies_prompt(prompt: str, text: str, k: int = 6) -> bool:
    """True when ``text`` contains k consecutive words of ``prompt`` (case and punctuation ignored)."""
    pw, tw = WORD.findall(prompt.lower()), WORD.findall(text.lower())
    grams = {tuple(pw[i:i + k]) for i in range(len(pw) - k + 1)}
    return any(tuple(tw[i:i + k]) in grams for i in range(len(tw) - k + 1))


def echo_rows(store, sweep_id: str, k: int) -> list[dict]:
    rows = []
    for p in store.point_records(sweep_id=sweep_id):
        gens = store.generations(p.id)
        n = sum(copies_prompt(g["prompt"], g["text"], k) for g in gens)
        pref = ", ".join(f"{w:g}" for w in p.preference) if p.preference else "-"
        rows.append({"point": p.id, "kind": p.kind, "preference": pref, "answers": len(gens),
                     f"copy >= {k} prompt words": n, "share": round(n / len(gens), 3) if gens else None})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep")
    ap.add_argument("--words", type=int, default=6, help="the run of consecutive prompt words that counts as an echo")
    ap.add_argument("--db", default=None, help="store URL (default: $PAMA_HOME's)")
    ap.add_argument("--tag", default=None)
    args = ap.parse_args()
    from pama.store import Store

    store = Store(args.db)
    text = header(f"Prompt echo: sweep {args.sweep}") + "\n" + markdown_table(echo_rows(store, args.sweep, args.words))
    print(text)
    if args.tag:
        write_text(f"echo-{args.tag}.md", text)


if __name__ == "__main__":
    main()
