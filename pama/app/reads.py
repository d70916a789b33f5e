"""The app's store and typed reads of it.

Each read is a function of the store that returns records (``pama.records``) or rows; calling it goes through
``st.cache_data`` for ``READ_TTL_S`` seconds, one cache per store URL (``PAMA_DB_URL`` / ``PAMA_HOME``), so that
pages redrawn on every widget change do not query the store each time. A page that writes (starts, cancels or
deletes a run, stores a mixture or a vote) calls ``clear()`` so that its next read is fresh, and the sidebar's
*Refresh data* button does the same; anything else changed by another process shows up within ``READ_TTL_S``.
``.fresh(...)`` reads the store now, for the live views (training progress, a run's details).

    points = reads.points(sweep_id=sid)      # list[PointRecord], cached
    run = reads.run.fresh(run_id)            # RunRecord | None, read now
"""
from __future__ import annotations

import functools
from typing import Callable, Concatenate, Generic, ParamSpec, TypeVar

import streamlit as st

from .. import paths
from .. import votes as V
from ..records import PointRecord, RunRecord, SweepRecord
from ..store import Store

READ_TTL_S = 3

P = ParamSpec("P")
R = TypeVar("R")


def store() -> Store:
    """The store for the current PAMA_DB_URL / PAMA_HOME, shared by sessions (``st.cache_resource``)."""
    return _store(paths.default_db_url())


@st.cache_resource(show_spinner=False)
def _store(url: str) -> Store:
    return Store(url)


def clear() -> None:
    """Forget every cached read (after a write, or when asked to refresh)."""
    st.cache_data.clear()


class Read(Generic[P, R]):
    """A typed read of the current store: ``read(...)`` cached, ``read.fresh(...)`` read now."""

    def __init__(self, fn: Callable[Concatenate[Store, P], R]):
        self._fn = fn
        # the store argument is hashed by its URL: one cache per store, as PAMA_DB_URL / PAMA_HOME may change
        self._cached = st.cache_data(ttl=READ_TTL_S, show_spinner=False, hash_funcs={Store: lambda s: s.url})(fn)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._cached(store(), *args, **kwargs)

    def fresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._fn(store(), *args, **kwargs)


@Read
def counts(store: Store) -> dict[str, int]:
    """{runs, sweeps, points}: how many of each the store holds."""
    return store.counts()


@Read
def runs(store: Store, *, status: str | None = None, sweep_id: str | None = None,
         limit: int | None = None) -> list[RunRecord]:
    """Runs, newest first, each with its objectives."""
    return store.run_records(status=status, sweep_id=sweep_id, limit=limit)


@Read
def run(store: Store, run_id: str) -> RunRecord | None:
    return store.run_record(run_id)


@Read
def sweeps(store: Store) -> list[SweepRecord]:
    """Sweeps, oldest first."""
    return store.sweep_records()


@Read
def points(store: Store, *, sweep_id: str | None = None, run_id: str | None = None,
           kind: str | None = None) -> list[PointRecord]:
    """Evaluated points, oldest first, with their per-objective estimates."""
    return store.point_records(sweep_id=sweep_id, run_id=run_id, kind=kind)


@Read
def point(store: Store, point_id: str) -> PointRecord | None:
    return store.point_record(point_id)


@Read
def generations(store: Store, point_id: str, limit: int | None = None) -> list[dict]:
    """The responses stored with a point's evaluation: {prompt_index, prompt, text, scores}."""
    return store.generations(point_id, limit=limit)


@Read
def metrics(store: Store, run_id: str, keys: tuple[str, ...] | None = None) -> list[dict]:
    """A run's logged metrics {step, key, value} (only ``keys`` when given)."""
    return store.metrics(run_id, keys=keys)


@Read
def votes(store: Store, *, sweep_id: str | None = None, point_ids: tuple[str, ...] | None = None) -> list[dict]:
    """Blind votes in order of arrival: of a sweep, and/or between two of ``point_ids``."""
    return store.votes(sweep_id=sweep_id, point_ids=point_ids)


@Read
def jobs(store: Store) -> list[dict]:
    """The queue's jobs (pama.jobs), oldest first: kind, status, worker, device, heartbeat, attempts, error, log."""
    return store.list_jobs()


@Read
def job(store: Store, job_id: str) -> dict | None:
    return store.get_job(job_id)


@Read
def names(store: Store) -> dict[str, str]:
    """Run and sweep ids → their names (the Queue page labels jobs with them)."""
    return {r["id"]: r["name"] for r in store.list_runs()} | {s["id"]: s["name"] for s in store.list_sweeps()}


@st.cache_data(show_spinner=False, max_entries=64)
def vote_scores(votes: list[dict]) -> dict[str, dict]:
    """Bradley–Terry scores of a list of votes (``pama.votes.scores``), cached on the votes themselves."""
    return V.scores(votes)
