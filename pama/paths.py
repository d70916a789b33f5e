"""Where the project keeps its files: one root (``checkpoints/``) so a Docker volume or ``PAMA_HOME`` moves all of it."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def home() -> Path:
    """The checkpoints root; read at call time so tests and the app can point it elsewhere."""
    return Path(os.environ.get("PAMA_HOME", REPO / "checkpoints")).resolve()


def model_cache() -> Path:
    """Shared by every store and test (PAMA_HOME may point elsewhere): the 538 MB base model is built once."""
    return Path(os.environ.get("PAMA_MODEL_CACHE", REPO / "checkpoints" / "models")).resolve()


def runs_dir() -> Path:
    return home() / "runs"


def run_dir(run_id: str) -> Path:
    return runs_dir() / run_id


def default_db_url() -> str:
    return os.environ.get("PAMA_DB_URL") or f"sqlite:///{home() / 'pama.db'}"
