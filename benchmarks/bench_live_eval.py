"""The live front's cost: seconds of one live evaluation (pama.livefront) against seconds of one training step.

Trains a short run with ``live_eval_every = 1`` (so every step has both), reads ``time/step`` and
``time/live_eval`` from the run's metrics, and reports the share of training time the live front takes at an
evaluation every K steps: live / (K × step + live). docs/performance.md ("Live front") quotes it; the default of
``live_eval_every`` follows from it (on when it costs at most 10% of the training time).

    .venv/bin/python benchmarks/bench_live_eval.py --model smollm2-135m --steps 3 --conditioned
"""
from __future__ import annotations

import argparse
import os
import tempfile

from common import header, markdown_table, median, write_csv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-random")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--conditioned", action="store_true", help="a conditioned run (three points per evaluation)")
    ap.add_argument("--prompts", type=int, default=16, help="live_eval_prompts")
    ap.add_argument("--tokens", type=int, default=32, help="live_eval_max_new_tokens")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64, help="the training rollouts' length")
    ap.add_argument("--every", default="1,5,10,20", help="K values to report")
    args = ap.parse_args()
    # a scratch store and checkpoints root unless PAMA_HOME says otherwise (the model cache stays shared)
    os.environ.setdefault("PAMA_HOME", tempfile.mkdtemp(prefix="pama-live-eval-"))

    from pama import trainer
    from pama.config import TrainConfig
    from pama.livefront import run_callbacks
    from pama.store import Store

    cfg = TrainConfig(model=args.model, steps=args.steps, batch_size=args.batch, max_new_tokens=args.max_new_tokens,
                      conditioned=args.conditioned, save_every=10 ** 6, live_eval_every=1,
                      live_eval_prompts=args.prompts, live_eval_max_new_tokens=args.tokens,
                      **({"target_modules": ["q_proj", "v_proj"]} if args.model == "tiny-random" else {}))
    store = Store()
    run_id = trainer.train(cfg.validate(), progress=False, callbacks=run_callbacks(cfg, store))
    rows = store.metrics(run_id, keys=["time/step", "time/live_eval"])
    step = [r["value"] for r in rows if r["key"] == "time/step"]
    live = [r["value"] for r in rows if r["key"] == "time/live_eval" and r["step"] > 0]   # step 0: the base
    base = [r["value"] for r in rows if r["key"] == "time/live_eval" and r["step"] == 0]
    s, e = median(step), median(live)
    table = [dict(K=int(k), step_s=s, live_s=e, share=e / (int(k) * s + e)) for k in args.every.split(",")]
    print(header("Live front: evaluation vs training step", {
        "run": f"{'conditioned (3 points)' if args.conditioned else 'plain (1 point)'}, {args.steps} steps, batch "
               f"{args.batch}, rollouts {args.max_new_tokens} tokens; live eval {args.prompts} prompts × "
               f"{args.tokens} tokens", "base evaluation (once, step 0)": f"{base[0]:.2f} s" if base else "-"}))
    print(markdown_table(table, ["K", "step_s", "live_s", "share"]))
    path = write_csv(f"live-eval-{args.model}{'-conditioned' if args.conditioned else ''}.csv", table)
    print(f"rows: {path}")


if __name__ == "__main__":
    main()
