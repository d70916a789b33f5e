"""The store's schema over time: the version this release writes, creating a new store's tables, Alembic upgrades,
the SQLite connection pragmas, and the errors of a database that cannot be used as configured.

``pama.store.Store`` calls :func:`check_schema` when it opens a database (never upgrading implicitly) and
``Store.upgrade`` is :func:`upgrade` (``python -m pama db upgrade``). The migrations themselves are in
``pama/migrations/versions/``; their environment (``pama/migrations/env.py``) reads ``pama.orm.Base.metadata``.
"""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DatabaseError, SQLAlchemyError

from . import paths
from .orm import Base

SCHEMA_HEAD = "0007"
UPGRADE_HINT = "python -m pama db upgrade"
MIGRATIONS = Path(__file__).parent / "migrations"


class StoreError(RuntimeError):
    """The store cannot be used as configured; the message says what to do."""


class SchemaOutOfDateError(StoreError):
    pass


def describe_url(url: str) -> str:
    """The URL without its password, safe to show in the app."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except SQLAlchemyError:
        return "<invalid URL>"


def known_revisions() -> set[str]:
    """The schema versions this release has migrations for (file names NNNN_*.py)."""
    return {p.name.split("_")[0] for p in (MIGRATIONS / "versions").glob("*.py")}


def alembic_config(url: str):
    from alembic.config import Config  # heavy: only for schema creation and upgrades

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def sqlite_pragmas(dbapi_conn, _record) -> None:
    """Every SQLite connection: foreign keys on, a 60 s busy wait, WAL (several writers and readers share a file)."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=60000")
    try:
        cur.execute("PRAGMA journal_mode=WAL")
    except Exception:  # read-only media or :memory: keep their journal mode
        pass
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_pragmas_migrating(dbapi_conn, record) -> None:
    sqlite_pragmas(dbapi_conn, record)
    dbapi_conn.execute("PRAGMA foreign_keys=OFF")


def schema_version(engine: Engine, safe_url: str) -> str | None:
    """The database's Alembic revision; None for an empty database, "unversioned" for tables without a revision."""
    try:
        with engine.connect() as conn:
            names = inspect(conn).get_table_names()
            if "alembic_version" not in names:
                return None if "runs" not in names else "unversioned"
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    except DatabaseError as err:  # operational (unreachable, locked), programming, 'file is not a database'
        raise StoreError(
            f"Cannot open the database at '{safe_url}': {str(err.orig).strip()}. Check that the server is running "
            "and the URL, credentials and file permissions are right (PAMA_DB_URL)."
        ) from err


def check_schema(engine: Engine, url: str, safe_url: str, create: bool) -> None:
    """Create the schema of an empty database (``create``), else refuse one this release cannot use as it is."""
    version = schema_version(engine, safe_url)
    if version is None:
        if not create:
            raise StoreError(f"No pama store at '{safe_url}'. Run `python -m pama db init` to create one.")
        try:
            version = create_schema(engine, url)
        except DatabaseError as err:
            raise StoreError(f"Cannot create the store at '{safe_url}': {str(err.orig).strip()}.") from err
    if version != SCHEMA_HEAD and version not in known_revisions() and version != "unversioned":
        raise SchemaOutOfDateError(
            f"The database at '{safe_url}' has schema version {version}, written by a newer release of "
            f"pama (this one knows up to {SCHEMA_HEAD}). Upgrade pama, or point PAMA_DB_URL at another database."
        )
    if version != SCHEMA_HEAD:
        raise SchemaOutOfDateError(
            f"The database at '{safe_url}' has schema version {version}; this version of pama needs "
            f"{SCHEMA_HEAD}. Back it up, then run `{UPGRADE_HINT}` (set PAMA_DB_URL to the same URL)."
        )


def create_schema(engine: Engine, url: str) -> str | None:
    """Create the tables and stamp the version in one transaction that holds the database's write lock, so that
    several processes opening a new store at once (four `pama train`, the app) neither race nor half-create it.
    Returns the version found under the lock (another process may have created the store meanwhile)."""
    from alembic import command  # heavy: only for schema creation and upgrades

    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")   # waits (busy_timeout) for any other creator
        elif engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7261040)")
        names = inspect(conn).get_table_names()
        if "alembic_version" in names or "runs" in names:
            version = (conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
                       if "alembic_version" in names else "unversioned")
            conn.rollback()
            return version
        Base.metadata.create_all(conn)
        cfg = alembic_config(url)
        cfg.attributes["connection"] = conn
        command.stamp(cfg, "head")
        conn.commit()
    return SCHEMA_HEAD


def upgrade(url: str | None = None) -> str:
    """Explicit upgrade to the current schema (Alembic); never done implicitly on open."""
    from alembic import command  # heavy: only for schema creation and upgrades

    url = url or paths.default_db_url()
    engine = create_engine(url)
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        # foreign keys off while migrating: SQLite changes a constraint by copying the table and dropping the old
        # one, and with them on that drop would cascade-delete the rows of its child tables (0005's points)
        event.listen(engine, "connect", _sqlite_pragmas_migrating)
    with engine.begin() as conn:
        cfg = alembic_config(url)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() if sqlite else []
        if broken:  # roll the whole upgrade back rather than leave dangling references
            raise StoreError(f"the upgrade of '{describe_url(url)}' would leave {len(broken)} rows referring to "
                             f"missing rows (first: {tuple(broken[0])}); nothing was changed")
    engine.dispose()
    return SCHEMA_HEAD
