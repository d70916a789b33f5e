"""The one JSON encoder of exports (the app's run download, the front/vote reports, `runs --json`): what the store
hands out that JSON lacks becomes text, lists or objects: datetimes and dates as ISO 8601, paths as strings, arrays
as lists, records (``pama.records``) and other dataclasses as objects of their fields."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any


def jsonable(x: Any):
    """``json.dumps(..., default=jsonable)``: ISO dates, paths as text, numpy values as lists, records as objects;
    anything else as str."""
    if hasattr(x, "to_dict") and dataclasses.is_dataclass(x):   # a pama.records record (its extra columns too)
        return x.to_dict()
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: getattr(x, f.name) for f in dataclasses.fields(x)}
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
