"""Downloads from the Runs page: a run's metrics as CSV, the run with its metrics and points as JSON (through
``pama.jsonio``, the encoder ``pama.report`` uses for the front and vote exports)."""
from __future__ import annotations

import csv
import io
from typing import Mapping, Sequence

from .. import jsonio
from ..records import RunRecord


def metrics_csv(metrics: Sequence[Mapping]) -> str:
    """Long format: step,key,value."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["step", "key", "value"])
    for m in metrics:
        w.writerow([m["step"], m["key"], repr(float(m["value"]))])
    return buf.getvalue()


def run_json(store, run_id: str) -> str:
    """The run, its metrics and its evaluated points as one JSON document."""
    run = RunRecord.from_dict(store.require_run(run_id))  # StoreError naming the run when it is gone
    return jsonio.dumps(dict(run=run, metrics=store.metrics(run_id), points=store.point_records(run_id=run_id)))
