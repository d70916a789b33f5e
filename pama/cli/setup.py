"""`setup`: build the embedded model cache and initialise the store (what `make run` does)."""
from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from .. import demo, migrate, models, paths
from ..store import SchemaOutOfDateError, Store, describe_url


def register(sub, add) -> None:
    p = add("setup", run, "Build the embedded model cache and initialise the store (what `make run` does).")
    p.add_argument("--no-demo", action="store_true",
                   help="do not import the shipped demo fronts (demo/front, demo/conditioned) into an empty store")


def run(args) -> int:
    models.main_build_cache()
    try:
        store = Store(args.db)
    except SchemaOutOfDateError as err:
        store = _upgrade_local_store(args.db, err)
    print(f"store ready: {describe_url(store.url)} (schema {store.schema_version()})")
    if not args.no_demo:
        for sweep_id in demo.import_if_empty(store):
            print(f"imported the demo front {sweep_id}")
    return 0


def _upgrade_local_store(url: str | None, err: SchemaOutOfDateError) -> Store:
    """`make run` after a `git pull` that brings a new schema: a SQLite file is copied to ``<file>.backup-<old
    version>`` and upgraded (Alembic), so the two commands keep working. A server (PostgreSQL) or a newer schema than
    this release knows is left alone: the error says what to do."""
    url = url or paths.default_db_url()
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:" \
            or "newer release" in str(err):
        raise err
    engine = create_engine(url)
    old = migrate.schema_version(engine, url)
    engine.dispose()
    db = Path(parsed.database).expanduser()
    backup = db.with_name(f"{db.name}.backup-{old}")
    shutil.copy2(db, backup)
    new = Store.upgrade(url)
    print(f"upgraded the store {describe_url(url)} from schema {old} to {new} (the old file is kept as {backup})")
    return Store(url)
