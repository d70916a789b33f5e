"""Several LoRA adapters in one model, and exact, instant mixtures of them.

``load_adapters(base, {name: path})`` puts every adapter into one :class:`peft.PeftModel`. ``mix(model, {name: w})``
then makes the model compute with ``W + Σ_i w_i·ΔW_i`` where ``ΔW_i = s_i·B_i A_i`` is adapter i's trained update:
all named adapters are active at once and each LoRA layer's per-adapter scaling is set to ``w_i·s_i``. Because a LoRA
layer adds ``Σ_{active a} scaling_a · B_a A_a x`` to the base output, this is exactly the merged-weights model, with
no rank growth, no new tensors and no reload: switching mixtures only rewrites a few floats.

PEFT's ``add_weighted_adapter(combination_type="linear")`` is NOT used: it scales A and B separately, so a two-adapter
mixture becomes ``(Σ √w_i A_i)ᵀ(Σ √w_i B_i)``, with cross terms ``B_i A_j``.

The original scalings are remembered on first use (``model._pama_scaling``), so repeated ``mix`` calls never compound.
Weights outside [0, 1] extrapolate beyond the trained adapters; that is allowed with a warning.
"""
from __future__ import annotations

import contextlib
import json
import math
import warnings
from pathlib import Path
from typing import Iterator, Mapping

from . import paths

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
DEMO_ROOT = paths.REPO / "demo"


class AdapterError(ValueError):
    """An adapter cannot be loaded or used; the message names the adapter and the file."""


def allowed_roots() -> list[Path]:
    """Adapters are only read from the checkpoints root (``PAMA_HOME``) or the shipped demo folder."""
    return [paths.home(), DEMO_ROOT.resolve()]


def check_adapter_path(path: str | Path, *, name: str | None = None) -> Path:
    """Resolve and validate an adapter folder: inside an allowed root, complete, readable, not truncated."""
    label = f"adapter {name!r}" if name else "adapter"
    if path is None or str(path).strip() == "":
        raise AdapterError(f"{label} has no adapter path (the run has no checkpoint yet)")
    p = Path(path).expanduser()
    try:
        p = p.resolve()
    except OSError as err:
        raise AdapterError(f"{label}: cannot resolve {path}: {err}") from None
    roots = allowed_roots()
    if not any(p == r or r in p.parents for r in roots):
        raise AdapterError(
            f"{label}: refusing to load {p}: adapters are only loaded from the checkpoints root ({roots[0]}, set by "
            f"PAMA_HOME) or the shipped demo folder ({roots[1]}). Copy the adapter folder under one of them.")
    if not p.exists():
        raise AdapterError(f"{label}: the adapter folder {p} does not exist (deleted, or the store points to another "
                           "machine's checkpoints)")
    if not p.is_dir():
        raise AdapterError(f"{label}: {p} is not a folder; an adapter folder holds {' and '.join(ADAPTER_FILES)}")
    missing = [f for f in ADAPTER_FILES if not (p / f).is_file()]
    if missing:
        raise AdapterError(f"{label}: {p} lacks {', '.join(missing)}; it is not a complete PEFT adapter folder")
    cfg_file = p / "adapter_config.json"
    try:
        cfg = json.loads(cfg_file.read_text())
        if not isinstance(cfg, dict) or "peft_type" not in cfg:
            raise ValueError("no 'peft_type' field")
    except (ValueError, UnicodeDecodeError) as err:
        raise AdapterError(f"{label}: {cfg_file} is corrupt ({err}); retrain or restore the adapter") from None
    if str(cfg.get("peft_type", "")).upper() != "LORA":
        raise AdapterError(f"{label}: {cfg_file} describes a {cfg.get('peft_type')} adapter; only LoRA is supported")
    weights = p / "adapter_model.safetensors"
    try:
        from safetensors import safe_open  # heavy: loaded only when an adapter file is read

        with safe_open(str(weights), framework="pt") as fh:
            keys = list(fh.keys())
            for k in keys:
                fh.get_tensor(k)
        if not keys:
            raise ValueError("it holds no tensors")
    except Exception as err:  # noqa: BLE001 - safetensors raises several types for truncated / garbage files
        raise AdapterError(f"{label}: {weights} is corrupt or truncated ({type(err).__name__}: {err}); retrain or "
                           "restore the adapter") from None
    return p


def load_adapters(base_model, adapters: Mapping[str, str | Path], *, progress: bool = False):
    """Wrap ``base_model`` (modified in place, as PEFT does) with every adapter of ``{name: folder}``.

    Returns a PeftModel in eval mode with the first adapter active and every adapter's original scaling remembered.
    Raises :class:`AdapterError` for bad names, paths outside the allowed roots, and missing or corrupt files.
    """
    from peft import PeftModel  # heavy (imports transformers): not needed to list or check adapters

    if not adapters:
        raise AdapterError("no adapters given")
    checked = {}
    for name, path in adapters.items():
        if not isinstance(name, str) or not name or "." in name:
            raise AdapterError(f"adapter name {name!r} must be a non-empty string without dots")
        checked[name] = check_adapter_path(path, name=name)
    items = list(checked.items())
    model = base_model
    if isinstance(base_model, PeftModel):
        present = set(base_model.peft_config)
        items = [(n, p) for n, p in items if n not in present]
    try:
        for i, (name, path) in enumerate(items):
            if not isinstance(model, PeftModel):
                model = PeftModel.from_pretrained(model, str(path), adapter_name=name, is_trainable=False)
            else:
                model.load_adapter(str(path), adapter_name=name, is_trainable=False)
    except (RuntimeError, ValueError, KeyError, OSError) as err:
        raise AdapterError(f"adapter {name!r} at {path} does not fit the base model "
                           f"({type(err).__name__}: {str(err).splitlines()[0][:300]})") from None
    model.eval()
    _remember_scaling(model)
    if _is_enabled(model):
        model.__dict__.setdefault("_pama_mixture", {adapter_names(model)[0]: 1.0})
    return model


def run_adapters(store, run_ids) -> dict[str, str]:
    """{run id: adapter folder} of stored runs (the folder of each run's latest checkpoint, as the trainer records
    it), refusing unknown runs and runs with no checkpoint yet: what the app and the CLI both load."""
    out = {}
    for run_id in run_ids:
        run = store.get_run(run_id)
        if run is None:
            raise AdapterError(f"run {run_id} is not in the store ({store.url}), so its adapter cannot be loaded; "
                               "`python -m pama runs` lists the runs")
        if not run.get("adapter_path"):
            raise AdapterError(f"run {run_id} ({run['status']}) has no saved adapter yet")
        out[run_id] = run["adapter_path"]
    return out


def parse_mix(text: str) -> dict[str, float]:
    """``RUN_A=0.3,RUN_B=0.7`` → {run: weight}: two or more different runs, each with a number."""
    weights: dict[str, float] = {}
    for item in (x.strip() for x in str(text).split(",")):
        if not item:
            continue
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not name:
            raise AdapterError(f"mixture item {item!r} must read RUN_ID=weight (e.g. r1=0.3,r2=0.7)")
        if name in weights:
            raise AdapterError(f"run {name} appears twice in the mixture")
        try:
            weights[name] = float(value)
        except ValueError:
            raise AdapterError(f"weight of adapter {name!r} must be a number, got {value.strip()!r}") from None
    if len(weights) < 2:
        raise AdapterError("a mixture needs two different adapters (RUN_A=w,RUN_B=w); for one run use --run")
    return weights


def adapter_names(model) -> list[str]:
    return list(getattr(model, "peft_config", {}) or {})


def _lora_layers(model) -> Iterator:
    from peft.tuners.lora import LoraLayer  # heavy (imports transformers)

    for module in model.modules():
        if isinstance(module, LoraLayer):
            yield module


def _remember_scaling(model) -> dict:
    """{(layer id, adapter): original scaling}; entries for newly loaded adapters are added, never overwritten."""
    store = model.__dict__.setdefault("_pama_scaling", {})
    for layer in _lora_layers(model):
        for name, s in layer.scaling.items():
            store.setdefault((id(layer), name), s)
    return store


def _check_weights(model, weights: Mapping[str, float]) -> dict[str, float]:
    known = adapter_names(model)
    if not known:
        raise AdapterError("the model has no adapters; load them with load_adapters(base, {name: path})")
    unknown = [n for n in weights if n not in known]
    if unknown:
        raise AdapterError(f"unknown adapter(s) {', '.join(map(repr, unknown))}; loaded: {', '.join(known)}")
    out = {}
    for n, w in weights.items():
        try:
            w = float(w)
        except (TypeError, ValueError):
            raise AdapterError(f"weight of adapter {n!r} must be a number, got {w!r}") from None
        if not math.isfinite(w):
            raise AdapterError(f"weight of adapter {n!r} must be finite, got {w}")
        out[n] = w
    outside = {n: w for n, w in out.items() if not 0.0 <= w <= 1.0}
    if outside:
        warnings.warn(f"mixture weights outside [0, 1] extrapolate beyond the trained adapters: {outside}",
                      stacklevel=3)
    return out


def mix(model, weights: Mapping[str, float]):
    """Compute with Σ_i w_i·ΔW_i of the named adapters (exact); adapters not named do not take part.

    ``{a: 1}`` is adapter a as trained; all-zero weights give the base model. Returns the model.
    """
    w = _check_weights(model, weights)
    original = _remember_scaling(model)
    active = [n for n, x in w.items() if x != 0.0]
    for layer in _lora_layers(model):
        for name in layer.scaling:
            key = (id(layer), name)
            if key in original:
                layer.scaling[name] = original[key] * w.get(name, 1.0)
    if not active:
        return use_base(model)
    model.base_model.enable_adapter_layers()
    model.base_model.set_adapter(active, inference_mode=True)
    model.__dict__["_pama_mixture"] = dict(w)
    return model


def unmix(model, adapter: str | None = None):
    """Restore every adapter's trained scaling and activate one adapter alone (default: the first loaded)."""
    names = adapter_names(model)
    if not names:
        raise AdapterError("the model has no adapters")
    return mix(model, {adapter or names[0]: 1.0})


def use_base(model):
    """Disable every adapter: the model computes as the base (the KL reference)."""
    if not adapter_names(model):
        return model
    model.base_model.disable_adapter_layers()
    model.__dict__["_pama_mixture"] = {}
    return model


def current_mixture(model) -> dict[str, float]:
    """The weights last set by ``mix`` ({} for the base model)."""
    return dict(model.__dict__.get("_pama_mixture", {}))


def _is_enabled(model) -> bool:
    for layer in _lora_layers(model):
        return not layer.disable_adapters
    return False


@contextlib.contextmanager
def mixed(model, weights: Mapping[str, float] | None):
    """``with mixed(model, {a: 0.3, b: 0.7}):`` (``None`` or ``{}`` = the base) and restore the previous state after."""
    before = current_mixture(model) if _is_enabled(model) else None
    try:
        if weights:
            mix(model, weights)
        else:
            use_base(model)
        yield model
    finally:
        if before:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mix(model, before)
        else:
            use_base(model)


@contextlib.contextmanager
def reference(model):
    """The adapter-disabled model (π_ref) inside the block, whatever mixture is active; restored after."""
    if not adapter_names(model):
        yield model
        return
    enabled = _is_enabled(model)
    model.base_model.disable_adapter_layers()
    try:
        yield model
    finally:
        if enabled:
            model.base_model.enable_adapter_layers()
