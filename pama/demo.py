"""The shipped demo folders, so that a fresh install shows real Pareto fronts of the embedded SmolLM2-135M before
anything is trained:

- ``demo/front/``: a PAMA preference sweep (three adapters, one per preference);
- ``demo/conditioned/`` (optional): ONE preference-conditioned adapter evaluated at 11 preferences (points of kind
  ``conditioned``, docs/conditioned.md), whose preference slider generates at any trade-off.

Each holds ``store.json`` (the sweep, its runs with their per-step metrics, its evaluated points with their values
and a sample of generations), ``adapters/<run id>/`` (adapter_config.json + adapter_model.safetensors; a conditioned
run's folder also ``conditioning.json`` and, for the svd form, ``preference_gates.safetensors``), and the exact
command and config that produced them (``COMMAND.md``, ``sweep.yaml``).

``import_if_empty(store)`` (called by ``python -m pama setup`` and the app's Home page) copies the records of every
shipped folder (``shipped_dirs()``: an explicit list, not a glob) into an empty store, with each run's
``adapter_path`` pointing into its folder's ``adapters/``, and the length-controlled scores of its points (stored in
``store.json`` by the export, or computed at import from the shipped generations; pama.controlled); it is
idempotent. ``export_sweep(store, sweep_id, dir)``
writes such a folder from any store, plain or conditioned sweep (it is how the shipped ones were made).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from pathlib import Path

from . import controlled, paths

DEMO_ROOT = paths.REPO / "demo"
DEMO_DIR = DEMO_ROOT / "front"                # the plain PAMA sweep (three adapters)
CONDITIONED_DIR = DEMO_ROOT / "conditioned"   # one preference-conditioned adapter and its front; may be absent
RECORDS = "store.json"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
# a conditioned adapter's own files: pama.conditioning.CONFIG_FILE and GATES_FILE, named here because this module is
# imported by the app's first page, which must not import torch (tests/test_demo.py checks that they agree)
CONDITIONING_FILES = ("conditioning.json", "preference_gates.safetensors")
FORMAT = 1

log = logging.getLogger(__name__)


def _iso(x):
    if isinstance(x, (dt.datetime, dt.date)):
        return x.isoformat()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def _dt(x):
    return dt.datetime.fromisoformat(x) if isinstance(x, str) else x


def shipped_dirs() -> list[Path]:
    """The shipped demo folders, in the order they are imported: demo/front, then demo/conditioned.

    Decision: an explicit list rather than every ``demo/*/store.json``, so that a scratch export left under demo/
    (or a half-copied folder) is never imported into every new store; shipping another folder means adding it here.
    Read at call time, so a test may point ``DEMO_DIR`` / ``CONDITIONED_DIR`` elsewhere."""
    return [Path(DEMO_DIR), Path(CONDITIONED_DIR)]


def available(demo_dir: str | Path | None = None) -> bool:
    """Whether ``demo_dir`` (default: any shipped demo folder) holds demo records."""
    dirs = [Path(demo_dir)] if demo_dir else shipped_dirs()
    return any((d / RECORDS).is_file() for d in dirs)


def export_sweep(store, sweep_id: str, out_dir: str | Path, *, generations_per_point: int = 8,
                 adapter_dtype: str | None = None) -> Path:
    """Write the sweep's records (JSON) and its adapters into ``out_dir``; returns the JSON path.

    A plain adapter is its two PEFT files; a conditioned run's adapter also brings ``conditioning.json`` and, for the
    svd form, ``preference_gates.safetensors``, and its run record lists them (``adapter_files``; plain runs' records
    are unchanged). The sweep's points are exported whatever their kind: base, adapter, mixture, and a conditioned
    run's ``conditioned`` points with their preferences, values and generations.

    ``adapter_dtype="bfloat16"`` stores the LoRA weights (adapter_model.safetensors) at half size (a shipped folder
    stays small; the loader casts them back to the model's precision). Decision: the preference gates stay float32:
    they are r + 1 numbers per LoRA layer (kilobytes), so casting them would save nothing and only add rounding."""
    out = Path(out_dir)
    sweep = store.get_sweep(sweep_id)
    if sweep is None:
        raise ValueError(f"no sweep {sweep_id!r} in {store.url}")
    runs = []
    (out / "adapters").mkdir(parents=True, exist_ok=True)
    for r in reversed(store.list_runs(sweep_id=sweep_id)):
        full = store.get_run(r["id"])
        rel, files = None, ADAPTER_FILES
        if r["adapter_path"]:
            src = Path(r["adapter_path"])
            dst = out / "adapters" / r["id"]
            dst.mkdir(parents=True, exist_ok=True)
            files = _adapter_files(src)
            for f in files:
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
        if rel and files != ADAPTER_FILES:   # a conditioned adapter: the import checks its extra files too
            runs[-1]["adapter_files"] = list(files)
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


def _adapter_files(src: Path) -> tuple[str, ...]:
    """The files of the adapter folder ``src`` to ship: PEFT's two, plus a conditioned adapter's own when present."""
    extra = tuple(f for f in CONDITIONING_FILES if (src / f).is_file())
    if extra and CONDITIONING_FILES[0] not in extra:
        raise ValueError(f"{src} holds {CONDITIONING_FILES[1]} without {CONDITIONING_FILES[0]}: not a complete "
                         "conditioned adapter; retrain or restore it")
    return ADAPTER_FILES + extra


def _cast_adapter(path: Path, dtype: str) -> None:
    import torch  # heavy: only to cast a demo adapter's dtype
    from safetensors.torch import load_file, save_file

    weights = load_file(path)
    save_file({k: v.to(getattr(torch, dtype)).contiguous() for k, v in weights.items()}, path,
              metadata={"format": "pt"})


def _read_demo(demo_dir: Path) -> dict:
    """The demo folder's records, checked (format, every adapter's files); raises ValueError. Writes nothing."""
    path = demo_dir / RECORDS
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read the demo records {path}: {err}") from None
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown format {data.get('format')!r} (expected {FORMAT})")
    for r in data["runs"]:
        if r.get("adapter"):
            need = r.get("adapter_files") or ADAPTER_FILES
            missing = [f for f in need if not (demo_dir / r["adapter"] / f).is_file()]
            if missing:
                raise ValueError(f"the demo adapter {demo_dir / r['adapter']} lacks {', '.join(missing)}")
    return data


def import_demo(store, demo_dir: str | Path | None = None) -> str:
    """Import the demo folder's records into ``store`` (ids kept); raises ValueError when they are incomplete.
    Idempotent: a sweep already in the store (same id) is left as it is and its id returned."""
    demo_dir = Path(demo_dir or DEMO_DIR).resolve()
    data = _read_demo(demo_dir)
    sw = data["sweep"]
    if store.get_sweep(sw["id"]) is not None:
        return sw["id"]
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
    _length_control(store, sw, data["points"])
    return sw["id"]


def _length_control(store, sweep: dict, points: list[dict]) -> None:
    """The imported front's length-controlled scores: those stored in the records when they hold them (computed at
    export from every generation), else computed now from the generations shipped with each point (16 per point in
    the shipped demos, so with wider intervals than the raw scores' 128 prompts)."""
    if (sweep.get("summary") or {}).get(controlled.SUMMARY_KEY):
        for p in points:
            store.set_controlled(p["id"], {o: None if v.get("lc_mean") is None else
                                           (v["lc_mean"], v["lc_low"], v["lc_high"]) for o, v in p["values"].items()})
        return
    controlled.control_sweep(store, sweep["id"])


def import_if_empty(store, demo_dirs: str | Path | list | tuple | None = None) -> list[str]:
    """Import every demo folder (default: ``shipped_dirs()``, those present) when the store has no runs, sweeps or
    points; returns the imported sweep ids in folder order ([] if skipped or there is nothing to import).

    A missing folder is skipped (demo/conditioned need not exist). A damaged one is skipped with a warning and the
    others are imported; when every present folder is damaged, ValueError names them all. Every folder is read and
    checked before anything is written."""
    if isinstance(demo_dirs, (str, Path)):
        demo_dirs = [demo_dirs]
    dirs = [Path(d).resolve() for d in (shipped_dirs() if demo_dirs is None else demo_dirs)]
    dirs = [d for d in dirs if available(d)]
    if not dirs:
        return []
    counts = store.counts()
    if counts["runs"] or counts["sweeps"] or counts["points"]:
        return []
    good, errors = [], []
    for d in dirs:
        try:
            _read_demo(d)
            good.append(d)
        except ValueError as err:
            errors.append(str(err))
            log.warning("demo folder %s not imported: %s", d, err)
    if errors and not good:
        raise ValueError("; ".join(errors))
    ids = []
    for d in good:
        sid = import_demo(store, d)
        if sid not in ids:
            ids.append(sid)
    return ids
