"""The svd form's surgery on PEFT (Panacea, Zhong et al. 2024): a gate per LoRA layer of an adapter of rank r + n, so
that the layer adds ΔW(p) = B · diag(σ_1..σ_r, s·p_1..s·p_n) · A at preference p; the registry of a model's conditioned
adapters (svd or prefix); and ``preference(model, p)``, the one place a preference reaches the gates.

The gate is a forward hook on the layer's ``lora_A[adapter]`` that multiplies its output by g(p) of shape (B, 1, r+n),
so every row of a batch may carry its own preference. σ and the per-layer scale s are trained (σ = 1, s = 1 at the
start; PEFT's B = 0 keeps ΔW = 0), the preference is not. The prefix form has no gates: it is registered here (its
preference line is ``pama.conditioning.prefix``)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch
from torch import nn

from ..config import ConfigError
from ..preference import PreferenceError, rows

__all__ = ["ConditioningError", "ConditionedAdapter", "PreferenceGate", "attach_gates", "register_prefix",
           "conditioned_adapters", "check_preference", "preference"]


class ConditioningError(ConfigError):
    """A preference or a conditioned adapter cannot be used as given; the message says what to do."""


class _Preference:
    """The preference the gates of one adapter read: (1, n) for the whole batch or (B, n), one per row."""

    __slots__ = ("p", "rows_differ")

    def __init__(self) -> None:
        self.p: torch.Tensor | None = None
        self.rows_differ = False


class PreferenceGate(nn.Module):
    """The gate of one LoRA layer: g(p) = (σ_1..σ_r, s·p_1..s·p_n), multiplied into lora_A's output."""

    def __init__(self, r: int, n: int, holder: _Preference, *, device=None):
        super().__init__()
        self.r, self.n = r, n
        self.sigma = nn.Parameter(torch.ones(r, device=device))
        self.scale = nn.Parameter(torch.ones(1, device=device))
        self._holder = holder

    @property
    def rows_differ(self) -> bool:
        """Whether the rows of the batch carry different preferences (no shared prompt prefix, no merged weights)."""
        return self._holder.rows_differ

    def gate(self) -> torch.Tensor:
        """(rows, r + n): rows = 1 (one preference for the batch) or B."""
        p = self._holder.p
        if p is None:
            raise ConditioningError("this adapter is preference-conditioned: run it inside `with "
                                    "pama.conditioning.preference(model, p):` (or use generate_at / --preference)")
        p = p.to(self.scale.device)
        return torch.cat([self.sigma.expand(p.shape[0], self.r), self.scale * p], dim=1)

    def hook(self, module, args, out: torch.Tensor) -> torch.Tensor:
        g = self.gate().to(out.dtype)
        rows = g.shape[0]
        if rows != 1 and out.shape[0] != rows:
            raise ConditioningError(f"the preference has {rows} rows but the batch has {out.shape[0]}: give one "
                                    "preference per row, or one for the whole batch")
        return out * (g.unsqueeze(1) if out.dim() == 3 else g)

    def delta_weight(self, layer, adapter: str) -> torch.Tensor:
        """This layer's gated update scaling · B · diag(g(p)) · A at one preference (what merged weights add)."""
        g = self.gate()
        if g.shape[0] != 1:
            raise ConditioningError("merged weights need one preference for the whole batch")
        A, B = layer.lora_A[adapter].weight, layer.lora_B[adapter].weight
        delta = (B * g[0].to(B.dtype)) @ A * layer.scaling[adapter]
        return delta.T if getattr(layer, "fan_in_fan_out", False) else delta


@dataclass
class ConditionedAdapter:
    """What a model knows about one of its conditioned adapters."""
    adapter: str
    form: str
    objectives: list[str]
    r: int = 0
    n: int = 0
    model: str | None = None
    holder: _Preference | None = field(default=None, repr=False)

    def as_json(self) -> dict:
        return dict(form=self.form, objectives=list(self.objectives), r=self.r, n=self.n, model=self.model)


# ------------------------------------------------------------------------------------------------------ attaching

def _unwrap(model):
    """The PEFT model inside a DistributedDataParallel (Accelerate) wrapper."""
    while hasattr(model, "module") and not hasattr(model, "peft_config"):
        model = model.module
    return model


def conditioned_adapters(model) -> dict[str, ConditionedAdapter]:
    """{adapter name: its conditioning} of the model's conditioned adapters ({} for plain ones)."""
    return _unwrap(model).__dict__.setdefault("_pama_conditioning", {})


def _lora_layers(model, adapter: str) -> list[tuple[str, nn.Module]]:
    from peft.tuners.lora import LoraLayer  # heavy (imports transformers)

    return [(name, m) for name, m in _unwrap(model).named_modules()
            if isinstance(m, LoraLayer) and adapter in m.lora_A]


def attach_gates(peft_model, n_objectives: int, *, adapter: str = "default", objectives: Sequence[str] = (),
                 model_spec: str | None = None) -> ConditionedAdapter:
    """Turn the LoRA adapter ``adapter`` (rank r + n) into an svd-conditioned one: a gate per LoRA layer (σ = 1,
    s = 1, trainable), hooked onto lora_A. Idempotent. Returns its :class:`ConditionedAdapter`."""
    known = conditioned_adapters(peft_model)
    if adapter in known and known[adapter].form == "svd":
        return known[adapter]
    layers = _lora_layers(peft_model, adapter)
    if not layers:
        raise ConditioningError(f"the model has no LoRA adapter {adapter!r} to condition")
    rank = layers[0][1].lora_A[adapter].out_features
    r = rank - int(n_objectives)
    if r < 0:
        raise ConditioningError(f"a LoRA rank of {rank} leaves no room for {n_objectives} preference columns; the "
                                f"svd form needs rank r + n with r ≥ 0")
    holder = _Preference()
    for _, layer in layers:
        if layer.lora_A[adapter].out_features != rank:
            raise ConditioningError(f"adapter {adapter!r} has layers of different ranks; the svd form needs one rank")
        if not hasattr(layer, "pama_gates"):
            layer.pama_gates = nn.ModuleDict()
        gate = PreferenceGate(r, int(n_objectives), holder, device=layer.lora_A[adapter].weight.device)
        layer.pama_gates[adapter] = gate
        gate._handle = layer.lora_A[adapter].register_forward_hook(gate.hook)
    info = ConditionedAdapter(adapter, "svd", list(objectives) or [f"objective {i + 1}" for i in range(n_objectives)],
                              r=r, n=int(n_objectives), model=model_spec, holder=holder)
    known[adapter] = info
    return info


def register_prefix(peft_model, objectives: Sequence[str], *, adapter: str = "default",
                    model_spec: str | None = None) -> ConditionedAdapter:
    """Mark ``adapter`` as prefix-conditioned: a plain LoRA adapter whose preference is written before the prompt."""
    info = ConditionedAdapter(adapter, "prefix", list(objectives), n=len(objectives), model=model_spec)
    conditioned_adapters(peft_model)[adapter] = info
    return info


def _gates(model, adapter: str) -> dict[str, PreferenceGate]:
    """{LoRA layer name: gate} of an svd-conditioned adapter."""
    return {name: layer.pama_gates[adapter] for name, layer in _lora_layers(model, adapter)
            if adapter in getattr(layer, "pama_gates", {})}



# ------------------------------------------------------------------------------------------------------ preferences

def check_preference(p, n: int, objectives: Sequence[str] = ()) -> torch.Tensor:
    """A preference as float32 (rows, n): a Preference, (n,) → (1, n); (B, n) one per row. Made by
    ``pama.preference.rows`` (its one policy: rows not summing to 1 are normalised with a warning); raises
    ConditioningError with its message (what was wrong, what to give instead)."""
    try:
        return rows(p, n, objectives=objectives)
    except PreferenceError as err:
        raise ConditioningError(str(err)) from None



def _targets(model, adapter: str | None) -> list[ConditionedAdapter]:
    known = conditioned_adapters(model)
    if adapter is not None:
        if adapter not in known:
            raise ConditioningError(f"adapter {adapter!r} is not preference-conditioned (trained without "
                                    "conditioned: true), so it takes no preference")
        return [known[adapter]]
    if not known:
        raise ConditioningError("the model has no preference-conditioned adapter (train one with conditioned: true); "
                                "a preference applies only to those")
    return list(known.values())


@contextlib.contextmanager
def preference(model, p, *, adapter: str | None = None) -> Iterator[torch.Tensor]:
    """Inside: the svd-conditioned adapter(s) compute at preference ``p``: (n,) for every row, or (B, n) one per row
    of the batch. Prefix-conditioned adapters need ``prompts_at`` instead (nothing to set here). Yields the checked,
    normalised (rows, n) preference; the previous one is restored on exit. Raises ConditioningError."""
    targets = _targets(model, adapter)
    pref = check_preference(p, targets[0].n, targets[0].objectives)
    saved = []
    for info in targets:
        if info.n != pref.shape[1]:
            raise ConditioningError(f"adapters {targets[0].adapter} and {info.adapter} were trained for different "
                                    "objectives; name one with adapter=")
        if info.holder is None:
            continue
        h = info.holder
        saved.append((h, h.p, h.rows_differ))
        differ = pref.shape[0] > 1 and not bool((pref == pref[:1]).all())
        h.p, h.rows_differ = (pref if differ else pref[:1]), differ
    try:
        yield pref
    finally:
        for h, p_old, differ_old in saved:
            h.p, h.rows_differ = p_old, differ_old

