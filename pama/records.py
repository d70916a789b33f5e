"""Typed, frozen records of what the store holds (Optuna's ``FrozenTrial`` style): runs, sweeps, evaluated points.

``Store.run_record`` / ``run_records`` / ``sweep_record`` / ``sweep_records`` / ``point_record`` / ``point_records``
return them; the older ``get_run`` / ``list_runs`` / ``points`` / ... still hand out dicts (docs/ARCHITECTURE.md says
which callers are left on dicts and why). During the transition a record also reads like that dict: ``rec["id"]``,
``rec.get("error")``, ``"values" in rec`` and ``dict(rec)`` work, so code written for the dicts (``pama.jobs``,
``pama.plots``, ``pama.votes``) takes records unchanged.

Frozen means the fields cannot be reassigned (``dataclasses.replace`` / ``rec.replace(...)`` makes a changed copy);
the JSON-valued fields (``config``, ``summary``, ``eval_config``, ``values``) are plain dicts, as in Optuna, so that
records pickle (``st.cache_data``) and serialise (``pama.jsonio``) as they are. Columns a newer schema adds before a
record names them are kept in ``extra`` and read like the others (``rec["new_column"]``)."""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Mapping

ACTIVE_STATUSES = ("queued", "running")


class Record:
    """dict-style reads of a frozen dataclass (the mixin of every record below)."""

    _nested: ClassVar[dict[str, type]] = {}   # field → record type of its items (tuple) or values (dict)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "extra")

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]):
        """A record from the store's dict of a row; keys it does not name go to ``extra`` (if it has one)."""
        names = cls.field_names()
        kw = {k: row[k] for k in names if k in row}
        for name, typ in cls._nested.items():
            value = kw.get(name)
            if isinstance(value, Mapping):
                kw[name] = {k: v if isinstance(v, typ) else typ.from_dict(v) for k, v in value.items()}
            elif value is not None:
                kw[name] = tuple(v if isinstance(v, typ) else typ.from_dict(v) for v in value)
        extra = {k: v for k, v in row.items() if k not in names}
        if extra and "extra" in {f.name for f in dataclasses.fields(cls)}:
            kw["extra"] = extra
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        """The fields (and ``extra``'s keys) as a dict, nested records kept (``pama.jsonio`` turns them into JSON)."""
        out = {k: getattr(self, k) for k in self.field_names()}
        out.update(getattr(self, "extra", None) or {})
        return out

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    # -- dict-style reads, for callers written for the store's dicts ------------------------------------------
    def keys(self) -> list[str]:
        return [*self.field_names(), *(getattr(self, "extra", None) or {})]

    def __getitem__(self, key: str):
        if key in self.field_names():
            return getattr(self, key)
        extra = getattr(self, "extra", None) or {}
        if key in extra:
            return extra[key]
        raise KeyError(key)

    def get(self, key: str, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())


@dataclass(frozen=True)
class ObjectiveBounds(Record):
    """One objective of a run, with the bounds it was normalised by."""
    name: str
    lower: float
    upper: float
    direction: str = "maximize"


@dataclass(frozen=True)
class Estimate(Record):
    """An objective's mean over a point's held-out prompts, with its 95% bootstrap interval; and its length-controlled
    score with its interval (``lc_*``, pama.lengthcontrol): None where not computed, or where the objective is length
    itself (the sweep's ``summary["length_control"]["is_length"]`` tells which)."""
    mean: float
    ci_low: float
    ci_high: float
    lc_mean: float | None = None
    lc_low: float | None = None
    lc_high: float | None = None

    @property
    def controlled(self) -> tuple[float, float, float] | None:
        """(mean, low, high) of the length-controlled score, or None."""
        if self.lc_mean is None:
            return None
        return (self.lc_mean, self.lc_low if self.lc_low is not None else self.lc_mean,
                self.lc_high if self.lc_high is not None else self.lc_mean)

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.ci_low:.3f}, {self.ci_high:.3f}]"


class Status:
    """``active`` for the records that have a status (runs, sweeps)."""
    status: str

    @property
    def active(self) -> bool:
        """Queued or running (its process may still have died: ``pama.jobs.reap`` finds out)."""
        return self.status in ACTIVE_STATUSES


@dataclass(frozen=True)
class RunRecord(Record, Status):
    """A training run: its row and its objectives in order."""
    id: str
    name: str
    method: str
    model: str
    status: str
    config: dict = field(default_factory=dict)
    created_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    heartbeat_at: dt.datetime | None = None
    step: int = 0
    total_steps: int = 0
    pid: int | None = None
    error: str | None = None
    adapter_path: str | None = None
    sweep_id: str | None = None
    objectives: tuple[ObjectiveBounds, ...] = ()
    extra: dict = field(default_factory=dict)

    _nested: ClassVar[dict[str, type]] = {"objectives": ObjectiveBounds}

    @classmethod
    def from_dict(cls, row):
        return super().from_dict({**row, "objectives": [{k: v for k, v in o.items() if k not in ("run_id", "position")}
                                                        for o in row.get("objectives") or []]})

    @property
    def objective_names(self) -> list[str]:
        return [o.name for o in self.objectives]



@dataclass(frozen=True)
class SweepRecord(Record, Status):
    """A sweep: one adapter per preference of a grid, evaluated, forming a front."""
    id: str
    name: str
    method: str
    model: str
    objectives: tuple[str, ...] = ()
    config: dict = field(default_factory=dict)
    status: str = "queued"
    summary: dict = field(default_factory=dict)
    created_at: dt.datetime | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, row):
        return super().from_dict({**row, "objectives": tuple(row.get("objectives") or ()),
                                  "summary": row.get("summary") or {}, "config": row.get("config") or {}})


@dataclass(frozen=True)
class PointRecord(Record):
    """An evaluated point (the base model, a run's adapter or a mixture) with its per-objective estimates."""
    id: str
    kind: str
    label: str
    model: str
    sweep_id: str | None = None
    run_id: str | None = None
    method: str | None = None
    preference: list | None = None
    mixture: dict | None = None
    eval_config: dict = field(default_factory=dict)
    kl: float | None = None
    mean_length: float | None = None
    distinct_1: float | None = None
    distinct_2: float | None = None
    eos_fraction: float | None = None
    created_at: dt.datetime | None = None
    values: dict[str, Estimate] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    _nested: ClassVar[dict[str, type]] = {"values": Estimate}
