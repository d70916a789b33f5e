"""What is picked and how it is shown: plotly selection events → point ids, the comparison set, filters of points
and runs, labels for pickers and the runs table. Pure functions of records (``pama.records``) or plain dicts."""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Mapping, Sequence

from .. import objectives as objmod
from .settings import BASE_ID, MAX_COMPARE


def _get(obj: Any, key: str, default=None):
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    try:
        return obj[key]
    except (KeyError, TypeError, IndexError):
        return getattr(obj, key, default)


def selected_point_ids(event: Any) -> list[str]:
    """A plotly selection event (``st.plotly_chart(on_select="rerun")``'s return value) → point ids, in click order,
    without duplicates. Each marker carries ``custom_data = [point id]``; lines and bands carry none."""
    selection = _get(event, "selection")
    points = _get(selection, "points") or []
    out: list[str] = []
    for p in points:
        cd = _get(p, "customdata")
        if cd is None:
            cd = _get(p, "custom_data")
        if isinstance(cd, (list, tuple)):
            cd = cd[0] if cd else None
        if isinstance(cd, str) and cd and cd not in out:
            out.append(cd)
    return out


def merge_selection(current: Sequence[str], clicked: Sequence[str], *, valid: Iterable[str] | None = None,
                    limit: int = MAX_COMPARE) -> list[str]:
    """The comparison set after a click: a new click replaces the plot's selection, kept to known ids and the limit.

    ``current`` is what the picker held; ``clicked`` the plot's selection (empty = keep ``current``)."""
    ids = list(clicked) if clicked else list(current)
    if valid is not None:
        ok = set(valid)
        ids = [i for i in ids if i in ok]
    return list(dict.fromkeys(ids))[:limit]


def point_label(point: Mapping, *, sweeps: Mapping[str, Mapping] | None = None) -> str:
    """Short human label for pickers: '<label> · <sweep name>  [<id>]'."""
    if point.get("id") == BASE_ID:
        return "base model"
    bits = [str(point.get("label") or point.get("id"))]
    if point.get("kind") == "base":
        bits = [f"base model ({point.get('label') or point.get('model')})"]
    sw = (sweeps or {}).get(point.get("sweep_id") or "")
    if sw:
        bits.append(str(sw.get("name")))
    return " · ".join(bits) + f"  [{point.get('id')}]"


def objectives_of(points: Sequence[Mapping], order: Sequence[str] = ()) -> list[str]:
    """Objectives in the sweeps' own order (the first is the x axis), then any others in first-seen order."""
    seen = {name for p in points for name in (p.get("values") or {})}
    out: list[str] = [name for name in order if name in seen]
    for p in points:
        for name in p.get("values") or {}:
            if name not in out:
                out.append(name)
    return out


def methods_of(points: Sequence[Mapping]) -> list[str]:
    return sorted({p.get("method") for p in points if p.get("method")})


def filter_points(points: Sequence[Mapping], *, sweep_ids: Iterable[str] | None = None,
                  methods: Iterable[str] | None = None, include_base: bool = True,
                  include_mixtures: bool = True) -> list:
    """The points kept by the filters (the same objects: records stay records)."""
    sweeps = set(sweep_ids) if sweep_ids is not None else None
    meths = set(methods) if methods is not None else None
    out = []
    for p in points:
        if sweeps is not None and p.get("sweep_id") not in sweeps:
            continue
        if p.get("kind") == "base":
            if include_base:
                out.append(p)
            continue
        if p.get("kind") == "mixture" and not include_mixtures:
            continue
        if meths is not None and p.get("method") not in meths:
            continue
        out.append(p)
    return out


def objective_bounds(names: Sequence[str], runs: Sequence[Mapping] = ()) -> dict[str, dict]:
    """{objective: {lower, upper, direction}} for normalised hypervolumes: from the runs' stored objectives first,
    then from built-in objectives (never loading a reward model; unknown → left out)."""
    out: dict[str, dict] = {}
    for run in runs:
        for o in run.get("objectives") or []:
            if o.get("name") in names and o["name"] not in out:
                out[o["name"]] = dict(lower=float(o["lower"]), upper=float(o["upper"]),
                                      direction=o.get("direction", "maximize"))
    for name in names:
        if name in out:
            continue
        try:
            kind, _, _ = objmod.parse_spec(name)
            if kind not in objmod.available():
                continue
            obj = objmod.get(name, allow_python=False)
        except ValueError:
            continue
        out[name] = dict(lower=obj.lower, upper=obj.upper, direction=obj.direction)
    return out


def runs_rows(runs: Sequence[Mapping], *, now: dt.datetime | None = None) -> list[dict]:
    """Rows for the runs table."""
    rows = []
    for r in runs:
        created = r.get("created_at")
        rows.append({
            "id": r["id"], "name": r.get("name"), "status": r.get("status"), "method": r.get("method"),
            "model": r.get("model"), "step": f"{r.get('step') or 0}/{r.get('total_steps') or 0}",
            "created": created.strftime("%Y-%m-%d %H:%M") if isinstance(created, dt.datetime) else str(created),
            "sweep": r.get("sweep_id") or "", "error": (r.get("error") or "")[:120],
        })
    return rows


def filter_runs(runs: Sequence[Mapping], *, statuses: Iterable[str] | None = None,
                methods: Iterable[str] | None = None, text: str = "") -> list:
    """The runs kept by the filters (the same objects: records stay records)."""
    st_ = set(statuses) if statuses else None
    me = set(methods) if methods else None
    text = (text or "").strip().lower()
    out = []
    for r in runs:
        if st_ is not None and r.get("status") not in st_:
            continue
        if me is not None and r.get("method") not in me:
            continue
        if text and text not in f"{r.get('id')} {r.get('name')} {r.get('model')}".lower():
            continue
        out.append(r)
    return out
