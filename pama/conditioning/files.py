"""A conditioned adapter's folder: PEFT's files plus ``conditioning.json`` (form, objectives, r, n, model) and, for the
svd form, ``preference_gates.safetensors`` (σ and s per layer). Writing and checking them, attaching them to a model
PEFT loaded, and ``materialize`` / ``export_at``: at a fixed p a conditioned adapter folded into an ordinary LoRA
adapter (exact mixing, generate and compare then work unchanged)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from ..config import CONDITIONING_FORMS
from .gates import (ConditionedAdapter, ConditioningError, _gates, _targets, _unwrap, attach_gates, check_preference,
                    conditioned_adapters, register_prefix)

CONFIG_FILE = "conditioning.json"
GATES_FILE = "preference_gates.safetensors"

__all__ = ["CONFIG_FILE", "GATES_FILE", "save_gates", "read_conditioning", "load_gates", "materialize", "export_at",
           "is_conditioned_folder"]


def save_gates(model, directory: str | Path, *, adapter: str = "default") -> None:
    """Write ``conditioning.json`` (and, for the svd form, ``preference_gates.safetensors``) into the adapter folder
    next to PEFT's files. A plain adapter writes nothing."""
    from safetensors.torch import save_file  # heavy-ish: only when an adapter is written

    info = conditioned_adapters(model).get(adapter)
    if info is None:
        return
    directory = Path(directory)
    if info.form == "svd":
        tensors = {}
        for name, gate in _gates(model, adapter).items():
            tensors[f"{name}.sigma"] = gate.sigma.detach().float().cpu().contiguous()
            tensors[f"{name}.scale"] = gate.scale.detach().float().cpu().contiguous()
        save_file(tensors, str(directory / GATES_FILE))
    tmp = directory / f".{CONFIG_FILE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(info.as_json(), indent=2))
    os.replace(tmp, directory / CONFIG_FILE)


def read_conditioning(directory: str | Path) -> dict | None:
    """The folder's ``conditioning.json`` (checked), or None for a plain adapter."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a mapping")
        form, objectives = data.get("form"), data.get("objectives")
        if form not in CONDITIONING_FORMS:
            raise ValueError(f"form {form!r} is not one of {', '.join(CONDITIONING_FORMS)}")
        if not isinstance(objectives, list) or len(objectives) < 2 or not all(isinstance(o, str) for o in objectives):
            raise ValueError("objectives must list two or more names")
        if form == "svd" and not (isinstance(data.get("r"), int) and data["r"] >= 0):
            raise ValueError("r must be a non-negative integer")
        data["n"] = len(objectives)
    except (ValueError, UnicodeDecodeError) as err:
        raise ConditioningError(f"{path} is corrupt ({err}); retrain or restore the adapter") from None
    if form == "svd" and not (Path(directory) / GATES_FILE).is_file():
        raise ConditioningError(f"{directory} lacks {GATES_FILE}: the conditioned adapter is incomplete; retrain or "
                                "restore it")
    return data


def _read_gates(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file  # heavy-ish

    try:
        return load_file(str(Path(directory) / GATES_FILE))
    except Exception as err:  # noqa: BLE001 - safetensors raises several types for truncated files
        raise ConditioningError(f"{Path(directory) / GATES_FILE} is corrupt or truncated ({type(err).__name__}); "
                                "retrain or restore the adapter") from None


def load_gates(model, directory: str | Path, *, adapter: str = "default") -> ConditionedAdapter | None:
    """After PEFT loaded the adapter folder as ``adapter``: attach its conditioning (gates with their trained σ and
    s, or the prefix form). Returns None for a plain adapter. Raises ConditioningError when the files do not fit."""
    data = read_conditioning(directory)
    if data is None:
        return None
    if data["form"] == "prefix":
        return register_prefix(model, data["objectives"], adapter=adapter, model_spec=data.get("model"))
    info = attach_gates(model, data["n"], adapter=adapter, objectives=data["objectives"], model_spec=data.get("model"))
    saved = _read_gates(Path(directory))
    gates = _gates(model, adapter)
    missing = [k for name in gates for k in (f"{name}.sigma", f"{name}.scale") if k not in saved]
    if missing or len(saved) != 2 * len(gates):
        raise ConditioningError(f"{Path(directory) / GATES_FILE} does not fit adapter {adapter!r} "
                                f"({len(saved)} tensors for {len(gates)} LoRA layers); retrain or restore it")
    with torch.no_grad():
        for name, gate in gates.items():
            gate.sigma.copy_(saved[f"{name}.sigma"])
            gate.scale.copy_(saved[f"{name}.scale"])
    return info


def _require_svd(form: str) -> None:
    if form != "svd":
        raise ConditioningError("a prefix-conditioned adapter is a plain adapter already; its preference goes in the "
                                "prompt (prompt_prefix)")


def materialize(model_or_dir, p, *, adapter: str = "default") -> dict[str, torch.Tensor]:
    """The plain LoRA state (PEFT's saved keys, as in ``adapter_model.safetensors``) that a conditioned adapter is at
    one preference ``p``: A's rows scaled by g(p), so B · A' = B · diag(g(p)) · A. Load it into a LoRA of the same
    config (rank r + n) and it computes exactly what the gated adapter computes at p."""
    if isinstance(model_or_dir, (str, Path)):
        from safetensors.torch import load_file  # heavy-ish

        directory = Path(model_or_dir)
        data = read_conditioning(directory)
        if data is None:
            raise ConditioningError(f"{directory} is a plain adapter: it is what it is at every preference")
        _require_svd(data["form"])
        state = load_file(str(directory / "adapter_model.safetensors"))
        pref = check_preference(p, data["n"], data["objectives"])
        sigma_scale = _read_gates(directory)
        layer_gates = {name.removesuffix(".sigma"): (sigma_scale[name], sigma_scale[name[:-6] + ".scale"])
                       for name in sigma_scale if name.endswith(".sigma")}
    else:
        from peft import get_peft_model_state_dict  # heavy

        info = _targets(model_or_dir, adapter)[0]
        _require_svd(info.form)
        state = {k: v.detach().clone() for k, v in
                 get_peft_model_state_dict(_unwrap(model_or_dir), adapter_name=adapter).items()}
        pref = check_preference(p, info.n, info.objectives)
        layer_gates = {name: (g.sigma.detach(), g.scale.detach()) for name, g in _gates(model_or_dir, adapter).items()}
    if pref.shape[0] != 1:
        raise ConditioningError("materialize takes one preference (n,), not one per row")
    out = dict(state)
    for name, (sigma, scale) in layer_gates.items():
        key = f"{name}.lora_A.weight"
        if key not in out:
            raise ConditioningError(f"the gates name a LoRA layer {name} that the adapter lacks; retrain or restore it")
        g = torch.cat([sigma.float().cpu(), scale.float().cpu() * pref[0]])
        A = out[key]
        out[key] = (A.float() * g.to(A.device).unsqueeze(1)).to(A.dtype)
    return out


def export_at(directory: str | Path, p, out_dir: str | Path) -> Path:
    """Write the conditioned adapter of ``directory`` at preference ``p`` as a plain PEFT adapter folder."""
    from safetensors.torch import save_file  # heavy-ish

    directory, out_dir = Path(directory), Path(out_dir)
    state = materialize(directory, p)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(directory / "adapter_config.json", out_dir / "adapter_config.json")
    save_file({k: v.contiguous() for k, v in state.items()}, str(out_dir / "adapter_model.safetensors"))
    return out_dir



def is_conditioned_folder(directory: str | Path) -> bool:
    return (Path(directory) / CONFIG_FILE).is_file()
