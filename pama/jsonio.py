"""The one JSON encoder of exports (the app's run download and the front/vote reports): what the store hands out
that JSON lacks becomes text or lists: datetimes and dates as ISO 8601, paths as strings, arrays as lists."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any


def jsonable(x: Any):
    """``json.dumps(..., default=jsonable)``: ISO dates, paths as text, numpy values as lists; anything else as str."""
    if isinstance(x, (dt.datetime, dt.date)):
        return x.isoformat()
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def dumps(obj: Any, **kw) -> str:
    """``json.dumps`` with :func:`jsonable` for what JSON lacks (indent 2 unless told otherwise)."""
    kw.setdefault("indent", 2)
    return json.dumps(obj, default=jsonable, **kw)
