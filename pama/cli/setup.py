"""`setup`: build the embedded model cache and initialise the store (what `make run` does)."""
from __future__ import annotations

from .. import demo, models
from ..store import Store, describe_url


def register(sub, add) -> None:
    p = add("setup", run, "Build the embedded model cache and initialise the store (what `make run` does).")
    p.add_argument("--no-demo", action="store_true",
                   help="do not import the shipped demo fronts (demo/front, demo/conditioned) into an empty store")


def run(args) -> int:
    models.main_build_cache()
    store = Store(args.db)
    print(f"store ready: {describe_url(store.url)} (schema {store.schema_version()})")
    if not args.no_demo:
        for sweep_id in demo.import_if_empty(store):
            print(f"imported the demo front {sweep_id}")
    return 0
