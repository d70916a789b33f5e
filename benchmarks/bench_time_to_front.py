"""Time from the command to a stored front whose ends are apart: what a user waits after "one conditioned adapter".

    .venv/bin/python benchmarks/bench_time_to_front.py [--rounds 1] [--timeout-min 60] [-- SWEEP ARGS ...]

Runs ``python -m pama sweep --conditioned --quiet`` (the Train form's "one conditioned adapter" with every default,
plus any SWEEP ARGS after ``--``) in a fresh PAMA_HOME and polls its store every 2 s. The clock stops at the first
moment the stored front's two ends lie apart beyond their 95% intervals on both objectives (each end's interval on
its own objective above the other end's: ``pama.evaluate.ends_apart``), or when the sweep ends without that.

Where the time goes, per round: loading (command start → the run's first step), training (first → last step, from
the run row), evaluation (the run's end → the front's last point). Prints the CPU model and the machine first; writes
benchmarks/results/time_to_front.csv and .md. A benchmark, not a test: nothing else should run meanwhile.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from common import ROOT, cpu_model, header, markdown_table, median, write_csv, write_text  # noqa: E402


def _ends(points: list[dict], objectives: list[str]) -> list[dict] | None:
    """The stored points at the extreme preferences (end i: preference 1 on objective i), in objective order."""
    ends = []
    for i in range(len(objectives)):
        hit = [p for p in points if p.get("preference") and max(p["preference"]) > 0.999
               and p["preference"].index(max(p["preference"])) == i and p["kind"] != "base"]
        if not hit:
            return None
        ends.append(hit[0])
    return ends


def _apart(ends: list[dict], objectives: list[str]) -> bool:
    for i, end in enumerate(ends):
        own = end["values"][objectives[i]]
        if any(own["ci_low"] <= other["values"][objectives[i]]["ci_high"] for j, other in enumerate(ends) if j != i):
            return False
    return True


def _ts(x) -> float | None:
    return None if x is None else x.timestamp()


def one_round(extra: list[str], timeout_s: float) -> dict:
    home = tempfile.mkdtemp(prefix="pama-ttf-")
    env = dict(os.environ, PAMA_HOME=home)
    env.pop("PAMA_DB_URL", None)
    # the model cache (checkpoints/models, PAMA_MODEL_CACHE) is shared: building it is setup, not the user's wait
    cmd = [sys.executable, "-m", "pama", "sweep", "--conditioned", "--quiet", *extra]
    t0 = time.time()
    log = open(os.path.join(home, "sweep.log"), "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    os.environ["PAMA_HOME"] = home
    from pama.store import Store

    store = None
    reached, first_point = None, None
    try:
        while time.time() - t0 < timeout_s:
            done = proc.poll() is not None
            if store is None and os.path.exists(os.path.join(home, "pama.db")):
                store = Store()
            if store is not None:
                sweeps = store.list_sweeps()
                if sweeps:
                    sw = sweeps[-1]
                    pts = store.points(sweep_id=sw["id"])
                    if pts and first_point is None:
                        first_point = time.time() - t0
                    ends = _ends(pts, sw["objectives"])
                    if ends and _apart(ends, sw["objectives"]):
                        reached = time.time() - t0
                        break
            if done:
                break
            time.sleep(2)
    finally:
        total = time.time() - t0
        rc = proc.poll()
        if rc is None:
            proc.wait()          # let the sweep finish its front (the rest of the evaluation is not timed)
            rc = proc.returncode
    row = dict(reached_s=reached, first_point_s=first_point, timed_out=reached is None and total >= timeout_s,
               rc=rc, home=home)
    if store is not None:
        sw = store.list_sweeps()[-1]
        runs = store.list_runs(sweep_id=sw["id"])
        pts = store.points(sweep_id=sw["id"])
        if runs:
            r = runs[0]
            started, finished = _ts(r.get("started_at")), _ts(r.get("finished_at"))
            row.update(steps=r.get("step"), load_s=None if started is None else started - t0,
                       train_s=None if started is None or finished is None else finished - started)
            if finished is not None and pts:
                last = max(_ts(p["created_at"]) for p in pts)
                row["eval_s"] = last - finished
        ends = _ends(pts, sw["objectives"])
        if ends:
            for i, o in enumerate(sw["objectives"]):
                for j, e in enumerate(ends):
                    v = e["values"][o]
                    row[f"end{j}:{o}"] = f"{v['mean']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]"
        row["prompts"] = " ".join(str(n) for n in sorted({p["eval_config"].get("n_prompts") for p in pts}))
        store.close()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--timeout-min", type=float, default=60.0)
    ap.add_argument("--keep", action="store_true", help="keep each round's PAMA_HOME (default: removed)")
    ap.add_argument("sweep_args", nargs=argparse.REMAINDER, help="after --: extra `pama sweep` arguments")
    args = ap.parse_args()
    extra = [a for a in args.sweep_args if a != "--"]
    print(header("Time to a visible front: `pama sweep --conditioned` to a stored front whose ends are apart",
                 {"sweep args": " ".join(extra) or "(the defaults)", "rounds": args.rounds}), flush=True)
    rows = []
    for k in range(args.rounds):
        row = one_round(extra, args.timeout_min * 60)
        row["round"] = k + 1
        rows.append(row)
        print(f"round {k + 1}: " + ", ".join(f"{key}={val}" for key, val in row.items() if key != "home"), flush=True)
        if not args.keep:
            shutil.rmtree(row["home"], ignore_errors=True)
    reached = [r["reached_s"] for r in rows if r["reached_s"] is not None]
    cols = ["round", "reached_s", "first_point_s", "load_s", "train_s", "eval_s", "steps", "prompts", "rc"] + \
        sorted({k for r in rows for k in r if k.startswith("end")})
    table = markdown_table(rows, cols)
    verdict = (f"median time to a visible front: {median(reached) / 60:.1f} min on {cpu_model()} "
               f"({len(reached)}/{len(rows)} rounds reached it)" if reached
               else f"no round reached a visible front on {cpu_model()}")
    print(table + "\n" + verdict)
    write_csv("time_to_front.csv", rows, cols)
    write_text("time_to_front.md", header("Time to a visible front", {"sweep args": " ".join(extra) or "defaults"})
               + "\n" + table + "\n" + verdict + "\n")


if __name__ == "__main__":
    main()
