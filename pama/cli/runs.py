"""`runs`: list the store's runs."""
from __future__ import annotations

from .. import jsonio
from ..store import Store


def register(sub, add) -> None:
    p = add("runs", run, "List the store's runs.")
    p.add_argument("--status", default=None)
    p.add_argument("--method", default=None)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--json", action="store_true")


def run(args) -> int:
    store = Store(args.db)
    store.mark_stale_failed()
    runs = store.run_records(status=args.status, method=args.method, limit=args.limit)
    if args.json:
        print(jsonio.dumps(runs))   # each run with its objectives; dates in ISO 8601
        return 0
    if not runs:
        print("no runs yet: start one with `python -m pama train --steps 5` or from the app's Train page")
        return 0
    header = f"{'id':<13} {'status':<9} {'method':<7} {'step':>9}  {'created':<19}  name"
    print(header)
    print("-" * len(header))
    for r in runs:
        print(f"{r.id:<13} {r.status:<9} {r.method:<7} {r.step:>4}/{r.total_steps:<4}  "
              f"{r.created_at:%Y-%m-%d %H:%M:%S}  {r.name}")
    return 0
