"""The shipped demo front (``demo/front/``): a PAMA preference sweep of the embedded SmolLM2-135M, so that a fresh
install shows a real Pareto front before anything is trained.

``demo/front/`` holds ``store.json`` (the sweep, its runs with their per-step metrics, its evaluated points with
their values and a sample of generations), ``adapters/<run id>/`` (adapter_config.json + adapter_model.safetensors
only), and the exact command and config that produced them (``COMMAND.md``, ``sweep.yaml``).

``import_if_empty(store)`` (called by ``python -m pama setup``) copies those records into an empty store, with each
run's ``adapter_path`` pointing into ``demo/front/adapters/``; it is idempotent. ``export_sweep(store, sweep_id, dir)``
writes such a folder from any store (it is how the shipped one was made).
"""
from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

from . import paths

DEMO_DIR = paths.REPO / "demo" / "front"
RECORDS = "store.json"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
FORMAT = 1


def _iso(x):
    if isinstance(x, (dt.datetime, dt.date)):
        return x.isoformat()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def _dt(x):
    return dt.datetime.fromisoformat(x) if isinstance(x, str) else x


def available(demo_dir: Path | None = None) -> bool:
    return (Path(demo_dir or DEMO_DIR) / RECORDS).is_file()


def export_sweep(store, sweep_id: str, out_dir: str | Path, *, generations_per_point: int = 8,
                 adapter_dtype: str | None = None) -> Path:
    """Write the sweep's records (JSON) and its adapters (two files each) into ``out_dir``; returns the JSON path.

    ``adapter_dtype="bfloat16"`` stores the adapter weights at half size (a shipped folder stays small; the loader
    casts them back to the model's precision)."""
    out = Path(out_dir)
    sweep = store.get_sweep(sweep_id)
    if sweep is None:
        raise ValueError(f"no sweep {sweep_id!r} in {store.url}")
    runs = []
    (out / "adapters").mkdir(parents=True, exist_ok=True)
    for r in reversed(store.list_runs(sweep_id=sweep_id)):
        full = store.get_run(r["id"])
        rel = None
        if r["adapter_path"]:
            src = Path(r["adapter_path"])
            dst = out / "adapters" / r["id"]
            dst.mkdir(parents=True, exist_ok=True)
            for f in ADAPTER_FILES:
                shutil.copy2(src / f, dst / f)
            if adapter_dtype:
                _cast_adapter(dst / "adapter_model.safetensors", adapter_dtype)
            rel = f"adapters/{r['id']}"
        metrics: dict[int, dict[str, float]] = {}
        for m in store.metrics(r["id"]):
            metrics.setdefault(m["step"], {})[m["key"]] = m["value"]
        runs.append(dict(
            id=r["id"], name=r["name"], method=r["method"], model=r["model"], status=r["status"],
            config=r["config"], step=r["step"], total_steps=r["total_steps"], created_at=r["created_at"],
            started_at=r["started_at"], finished_at=r["finished_at"], adapter=rel,
            objectives=[{k: o[k] for k in ("name", "direction", "lower", "upper")} for o in full["objectives"]],
            metrics=[dict(step=s, values=v) for s, v in sorted(metrics.items())]))
    points = []
    for p in store.points(sweep_id=sweep_id):
        gens = store.generations(p["id"], limit=generations_per_point)
        points.append(dict({k: p[k] for k in ("id", "kind", "label", "method", "model", "preference", "mixture",
                                              "eval_config", "kl", "mean_length", "distinct_1", "distinct_2",
                                              "eos_fraction", "run_id", "created_at")},
                           values=p["values"],
                           generations=[{k: g[k] for k in ("prompt_index", "prompt", "text", "scores")}
                                        for g in gens]))
    data = dict(format=FORMAT, sweep={k: sweep[k] for k in ("id", "name", "method", "model", "objectives", "config",
                                                            "status", "summary", "created_at")},
                runs=runs, points=points)
    path = out / RECORDS
    path.write_text(json.dumps(data, indent=1, default=_iso))
    return path


def _cast_adapter(path: Path, dtype: str) -> None:
    import torch  # heavy: only to cast a demo adapter's dtype
    from safetensors.torch import load_file, save_file

    weights = load_file(path)
    save_file({k: v.to(getattr(torch, dtype)).contiguous() for k, v in weights.items()}, path,
              metadata={"format": "pt"})


def import_demo(store, demo_dir: str | Path | None = None) -> str:
    """Import the demo folder's records into ``store`` (ids kept); raises ValueError when they are incomplete."""
    demo_dir = Path(demo_dir or DEMO_DIR).resolve()
    path = demo_dir / RECORDS
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read the demo records {path}: {err}") from None
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown format {data.get('format')!r} (expected {FORMAT})")
    sw = data["sweep"]
    for r in data["runs"]:
        if r.get("adapter"):
            missing = [f for f in ADAPTER_FILES if not (demo_dir / r["adapter"] / f).is_file()]
            if missing:
                raise ValueError(f"the demo adapter {demo_dir / r['adapter']} lacks {', '.join(missing)}")
    store.create_sweep(name=sw["name"], method=sw["method"], model=sw["model"], objectives=sw["objectives"],
                       config=sw["config"], sweep_id=sw["id"])
    store.update_sweep(sw["id"], status=sw["status"], summary=sw["summary"], created_at=_dt(sw["created_at"]))
    for r in data["runs"]:
        store.create_run(name=r["name"], method=r["method"], model=r["model"], config=r["config"],
                         objectives=r["objectives"], total_steps=r["total_steps"], sweep_id=sw["id"],
                         run_id=r["id"])
        for m in r["metrics"]:
            store.log_metrics(r["id"], m["step"], m["values"])
        store.update_run(r["id"], status=r["status"], step=r["step"], created_at=_dt(r["created_at"]),
                         started_at=_dt(r["started_at"]), finished_at=_dt(r["finished_at"]),
                         heartbeat_at=_dt(r["finished_at"]),
                         adapter_path=str(demo_dir / r["adapter"]) if r.get("adapter") else None)
    for p in data["points"]:
        store.add_point(kind=p["kind"], label=p["label"], model=p["model"], sweep_id=sw["id"], run_id=p["run_id"],
                        method=p["method"], preference=p["preference"], mixture=p["mixture"],
                        eval_config=p["eval_config"], kl=p["kl"], mean_length=p["mean_length"],
                        distinct_1=p["distinct_1"], distinct_2=p["distinct_2"], eos_fraction=p.get("eos_fraction"),
                        point_id=p["id"],
                        values={o: (v["mean"], v["ci_low"], v["ci_high"]) for o, v in p["values"].items()},
                        generations=p["generations"])
    return sw["id"]


def import_if_empty(store, demo_dir: str | Path | None = None) -> str | None:
    """Import the demo front when the store has no runs and no sweeps; returns the sweep id, or None if skipped."""
    if not available(demo_dir):
        return None
    counts = store.counts()
    if counts["runs"] or counts["sweeps"] or counts["points"]:
        return None
    return import_demo(store, demo_dir)
