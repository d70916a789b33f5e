"""`db`: the database schema: init, upgrade (Alembic) or show the version."""
from __future__ import annotations

from .. import paths
from ..store import SCHEMA_HEAD, Store, StoreError, describe_url


def register(sub, add) -> None:
    p = add("db", run, "Database schema: init, upgrade (Alembic) or show the version.")
    p.add_argument("action", choices=["init", "upgrade", "version"])


def run(args) -> int:
    url = args.db or paths.default_db_url()
    if args.action == "upgrade":
        Store.upgrade(url)
        print(f"{describe_url(url)} upgraded to schema {SCHEMA_HEAD}")
    elif args.action == "init":
        store = Store(url)
        print(f"{describe_url(url)} ready (schema {store.schema_version()})")
    else:
        try:
            store = Store(url, create=False)
            print(f"{describe_url(url)}: schema {store.schema_version()} (current {SCHEMA_HEAD})")
        except StoreError as err:
            print(err)
            return 1
    return 0
