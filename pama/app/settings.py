"""What every app helper shares: the app's defaults, its environment switches and ``UIError``."""
from __future__ import annotations

import logging
import os

from .. import demo

# what the app samples with unless told otherwise: the evaluation's default temperature (fluent text from a small
# model) and room for an answer to end on its own
GENERATION_TEMPERATURE = 0.7
GENERATION_MAX_NEW_TOKENS = 128

MAX_COMPARE = 4
BASE_ID = "base"          # the pseudo point id of "the base model" in pickers
QUICK_PROMPTS = 8         # held-out prompts per mixture evaluated from the app (quick on CPU)


class UIError(ValueError):
    """A user-facing problem; the message says what was wrong and what to do."""


def app_model_override() -> str | None:
    """``PAMA_APP_MODEL`` forces one model for every generation in the app (tests use tiny-random)."""
    return (os.environ.get("PAMA_APP_MODEL") or "").strip() or None


def default_model() -> str:
    from ..models import DEFAULT_MODEL  # heavy: models imports torch, which the app's first page does not need

    return app_model_override() or DEFAULT_MODEL


def demo_enabled() -> bool:
    return os.environ.get("PAMA_NO_DEMO", "").lower() not in ("1", "true", "yes")


def import_demo(store) -> str | None:
    """Import the shipped demo folders (demo/front and, when shipped, demo/conditioned: pama.demo) into an empty
    store; returns their sweep ids as one string, None when there is nothing to import."""
    try:
        out = demo.import_if_empty(store)
    except Exception as err:  # noqa: BLE001 - the home page must load even when the demo files are damaged
        logging.getLogger(__name__).warning("demo import failed: %s", err)
        return None
    if not out:
        return None
    return ", ".join(out) if isinstance(out, (list, tuple)) else str(out)
