"""Downloads from the Runs page: a run's metrics as CSV, the run with its metrics and points as JSON (through
``pama.jsonio``, the encoder ``pama.report`` uses for the front and vote exports)."""
from __future__ import annotations

import csv
import io
from typing import Mapping, Sequence

from .. import jsonio, report
from ..fronts import front_table
from ..records import RunRecord


def metrics_csv(metrics: Sequence[Mapping]) -> str:
    """Long format: step,key,value."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["step", "key", "value"])
    for m in metrics:
        w.writerow([m["step"], m["key"], repr(float(m["value"]))])
    return buf.getvalue()


def front_csv(store, sweep_id: str, scores: Mapping[str, Mapping]) -> str:
    """A sweep's front table (``pama.fronts.front_table``) with the points' vote scores, as CSV (``pama.report``)."""
    rows, summary = front_table(store, sweep_id)
    return report.to_csv(report.add_vote_columns(rows, scores), summary)


def votes_json(store, sweep_id: str) -> str:
    """A sweep's votes and scores as JSON (``pama.report.votes_json``)."""
    return report.votes_json(store, sweep_id)


def run_json(store, run_id: str) -> str:
    """The run, its metrics and its evaluated points as one JSON document."""
    run = RunRecord.from_dict(store.require_run(run_id))  # StoreError naming the run when it is gone
    return jsonio.dumps(dict(run=run, metrics=store.metrics(run_id), points=store.point_records(run_id=run_id)))
