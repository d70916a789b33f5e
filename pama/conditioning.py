"""One adapter for the whole front: a preference-conditioned LoRA adapter (docs/conditioned.md).

Two forms, chosen by ``TrainConfig.conditioning``:

- ``svd`` (Panacea, Zhong et al. 2024): an ordinary PEFT LoRA adapter of rank r + n (n objectives) plus one gate per
  LoRA layer, so that the layer adds ΔW(p) = B · diag(σ_1..σ_r, s·p_1..s·p_n) · A. The r singular values σ and the
  per-layer scale s are trained (σ = 1, s = 1 at the start; PEFT's B = 0 keeps ΔW = 0), the preference p is not. The
  gate is a forward hook on the layer's ``lora_A[adapter]`` that multiplies its output by g(p) of shape (B, 1, r+n),
  so every row of a batch may carry its own preference.
- ``prefix`` (Conditioned Language Policies, RiC): a plain LoRA adapter; the preference is written as a line before
  the user prompt ("Preference weights: informativeness 0.30, conciseness 0.70").

Either adapter folder holds PEFT's files plus ``conditioning.json`` (form, objectives, r, n, model), and the svd form
``preference_gates.safetensors`` (σ and s per layer). ``materialize(model_or_dir, p)`` folds diag(g(p)) into A: at a
fixed p a conditioned adapter becomes an ordinary LoRA adapter (exact mixing, generate, compare work unchanged).

The app's entry points: ``load_conditioned(run id or folder) -> (model, tokenizer, objectives)`` once, then
``generate_at(model, tokenizer, prompts, p, ...)`` for every p (changing p rewrites one tensor; nothing reloads).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from . import adapters as adp
from . import models
from .config import CONDITIONING_FORMS, ConfigError, TrainConfig
from .pareto import conditioned_grid
from .preference import Preference, PreferenceError, project, rows

CONFIG_FILE = "conditioning.json"
GATES_FILE = "preference_gates.safetensors"
PREFIX_HEAD = "Preference weights: "
GRID_NOISE = 0.02  # standard deviation of the noise added to a grid preference (preference_sampling: grid)

__all__ = [
    "ConditioningError", "ConditionedAdapter", "PreferenceGate", "attach_gates", "register_prefix", "preference",
    "check_preference", "prompt_prefix", "prompts_at", "save_gates", "load_gates", "read_conditioning",
    "materialize", "export_at", "conditioned_adapters", "load_conditioned", "generate_at", "Conditioner",
    "make_conditioner", "parse_preference", "resolve_preference", "fit_prompt",
]


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
    if r < 1:
        raise ConditioningError(f"a LoRA rank of {rank} leaves no room for {n_objectives} preference columns; the "
                                f"svd form needs rank r + n with r ≥ 1")
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


def parse_preference(text: str, n: int | None = None, objectives: Sequence[str] = ()) -> Preference:
    """``"0.3,0.7"`` → a Preference (``pama.preference``); raises ConditioningError saying what to write."""
    try:
        return Preference.parse(text, n, objectives=objectives, what="--preference")
    except PreferenceError as err:
        raise ConditioningError(str(err)) from None


def resolve_preference(text: str | None, config: dict | None, objectives: Sequence[str]) -> Preference:
    """The preference a CLI command uses: ``--preference`` text if given, else the run config's ``preference`` (made
    when the run's config was), else uniform. Raises ConditioningError."""
    n = len(objectives)
    if text is not None:
        return parse_preference(text, n, objectives)
    stored = (config or {}).get("preference") or []
    return parse_preference(stored, n, objectives) if len(stored) == n else Preference.uniform(n)


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


def prefix_text(objectives: Sequence[str], p: Sequence[float]) -> str:
    """The line a prefix-conditioned adapter reads before the prompt."""
    return PREFIX_HEAD + ", ".join(f"{o} {float(w):.2f}" for o, w in zip(objectives, p)) + "\n\n"


def prompt_prefix(model, p, *, adapter: str | None = None) -> str:
    """The text to write before every prompt at one preference ``p``: the preference line for a prefix-conditioned
    adapter, '' for an svd one."""
    info = _targets(model, adapter)[0]
    if info.form != "prefix":
        return ""
    return prefix_text(info.objectives, check_preference(p, info.n, info.objectives)[0].tolist())


def _chat_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(models.chat_prompts(tokenizer, [text])[0], add_special_tokens=False)["input_ids"])


def fit_prompt(tokenizer, prefix: str, prompt: str) -> str:
    """``prefix + prompt``, the prompt's start cut so that the chat-formatted whole fits ``models.PROMPT_MAX_TOKENS``.

    ``models.encode`` cuts over-long prompts from the left, which would drop a prefix-conditioned adapter's preference
    line first; cutting the user's prompt instead keeps the line (and the prompt's end, where the question usually
    is, as the left cut does). Without a prefix or a tokenizer the text is returned as it is."""
    text = prefix + prompt
    if not prefix or tokenizer is None:
        return text
    excess = _chat_tokens(tokenizer, text) - models.PROMPT_MAX_TOKENS
    if excess <= 0:
        return text
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    while excess > 0 and ids:  # decoding and tokenising again can merge tokens at the cut: repeat until it fits
        ids = ids[excess:]
        text = prefix + tokenizer.decode(ids).lstrip()
        excess = _chat_tokens(tokenizer, text) - models.PROMPT_MAX_TOKENS
    return text


def prompts_at(model, prompts: Sequence[str], p, *, adapter: str | None = None, tokenizer=None) -> list[str]:
    """The prompts as the adapter must read them at ``p`` ((n,) for all, or one row per prompt): unchanged for the svd
    form, each behind its preference line for the prefix form (with ``tokenizer``, an over-long prompt is cut so that
    the line stays: ``fit_prompt``)."""
    info = _targets(model, adapter)[0]
    if info.form != "prefix":
        return list(prompts)
    pref = check_preference(p, info.n, info.objectives)
    if pref.shape[0] not in (1, len(prompts)):
        raise ConditioningError(f"{pref.shape[0]} preferences for {len(prompts)} prompts: give one, or one per prompt")
    rows = pref.expand(len(prompts), -1).tolist()
    return [fit_prompt(tokenizer, prefix_text(info.objectives, row), text) for row, text in zip(rows, prompts)]


# ------------------------------------------------------------------------------------------------------ files

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
        if form == "svd" and not (isinstance(data.get("r"), int) and data["r"] >= 1):
            raise ValueError("r must be a positive integer")
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


# ------------------------------------------------------------------------------------------------------ the app's API

def load_conditioned(source: str | Path, *, store=None, model: str | None = None, device=None,
                     dtype: torch.dtype = torch.float32):
    """Load a conditioned adapter once: ``source`` is a run id (looked up in ``store``, default ``Store()``) or an
    adapter folder (under the checkpoints root or the demo folder). Returns (model, tokenizer, objectives); then
    ``generate_at`` (or ``preference`` + ``prompts_at``) at any p without reloading."""
    name = "conditioned"
    folder = Path(source) if (os.sep in str(source) or Path(source).is_dir()) else None
    spec = model
    if folder is None:
        if store is None:
            from .store import Store  # the store only when a run id is given

            store = Store()
        folder = Path(adp.run_adapters(store, [str(source)])[str(source)])
        name = str(source)
        spec = spec or store.get_run(str(source))["model"]
    folder = adp.check_adapter_path(folder, name=name)
    data = read_conditioning(folder)
    if data is None:
        raise ConditioningError(f"{folder} is a plain adapter (trained without conditioned: true): it takes no "
                                "preference; use `python -m pama generate --run` / --adapter")
    base, tok = models.load(spec or data.get("model") or models.DEFAULT_MODEL, device=device, dtype=dtype)
    peft_model = adp.load_adapters(base, {name: folder})
    load_gates(peft_model, folder, adapter=name)
    return peft_model, tok, list(data["objectives"])


def generate_at(model, tokenizer, prompts: Sequence[str], p, *, adapter: str | None = None, **gen_kwargs) -> list[str]:
    """Generate with the model's conditioned adapter at preference ``p`` ((n,) for every prompt, or one row per
    prompt); ``gen_kwargs`` as ``pama.models.generate`` (max_new_tokens, temperature, top_p, seed)."""
    with preference(model, p, adapter=adapter):
        return models.generate(model, tokenizer, prompts_at(model, prompts, p, adapter=adapter, tokenizer=tokenizer),
                               **gen_kwargs)


# ------------------------------------------------------------------------------------------------------ training

class Conditioner:
    """What a training run does with preferences. This base class is a plain run: nothing drawn, nothing fed."""

    conditioned = False

    def lora_rank(self, r: int) -> int:
        return r

    def value_inputs(self) -> int:
        """Extra inputs of the value heads (the preference)."""
        return 0

    def wrap(self, peft_model, model_spec: str | None = None):
        return peft_model

    def draw(self, step: int, groups: int, k: int, *, rank: int = 0, world: int = 1) -> torch.Tensor | None:
        """(groups·k, n) preferences of a rollout (the k samples of a prompt share one), or None."""
        return None

    def prompts(self, prompts: list[str], pref: torch.Tensor | None, tokenizer=None) -> list[str]:
        """The prompts as the policy reads them (``tokenizer``: to keep a preference line on a long prompt)."""
        return prompts

    def policy(self, model, pref: torch.Tensor | None):
        return contextlib.nullcontext()

    def metrics(self, pref: torch.Tensor | None) -> dict[str, float]:
        return {}

    def save(self, model, directory: Path) -> None:
        pass

    def check(self, directory: Path) -> None:
        """Raise unless the checkpoint's adapter folder holds what ``load`` needs (before anything is touched)."""

    def load(self, model, directory: Path) -> None:
        pass


class PreferenceConditioner(Conditioner):
    """A conditioned run: each prompt group draws its preference (Dirichlet or grid + noise, from (seed, step, rank)
    alone, so a resumed run draws what an uninterrupted one would), the policy and value heads receive it."""

    conditioned = True

    def __init__(self, cfg: TrainConfig, objectives: Sequence[str]):
        self.cfg = cfg
        self.form = cfg.conditioning
        self.objectives = list(objectives)
        self.n = len(self.objectives)

    def lora_rank(self, r: int) -> int:
        return r + self.n if self.form == "svd" else r

    def value_inputs(self) -> int:
        return self.n

    def wrap(self, peft_model, model_spec: str | None = None):
        if self.form == "svd":
            attach_gates(peft_model, self.n, objectives=self.objectives, model_spec=model_spec)
        else:
            register_prefix(peft_model, self.objectives, model_spec=model_spec)
        return peft_model

    def draw(self, step, groups, k, *, rank=0, world=1):
        rng = np.random.default_rng([int(self.cfg.seed), int(step), int(rank)])
        n = self.n
        if self.cfg.preference_sampling == "grid":
            grid = np.asarray(conditioned_grid(n))
            start = ((step - 1) * world + rank) * groups
            p = grid[(start + np.arange(groups)) % len(grid)] + rng.normal(0.0, GRID_NOISE, size=(groups, n))
        else:
            p = rng.dirichlet([self.cfg.preference_alpha] * n, size=groups)
        p = project(p)  # onto the simplex (pama.preference): the noise may leave it
        return torch.as_tensor(np.repeat(p, k, axis=0), dtype=torch.float32)

    def prompts(self, prompts, pref, tokenizer=None):
        if self.form != "prefix":
            return prompts
        return [fit_prompt(tokenizer, prefix_text(self.objectives, row), text)
                for row, text in zip(pref.tolist(), prompts)]

    def policy(self, model, pref):
        return preference(model, pref) if self.form == "svd" else contextlib.nullcontext()

    def metrics(self, pref):
        means = pref.mean(0).tolist()
        return {f"preference/{o}/mean": float(m) for o, m in zip(self.objectives, means)}

    def save(self, model, directory):
        save_gates(model, directory)

    def check(self, directory):
        info = read_conditioning(directory)
        if info is None or info["form"] != self.form or info["objectives"] != self.objectives:
            raise ConditioningError(f"{directory} holds no {self.form}-conditioned adapter for {self.objectives}")
        if self.form == "svd":
            _read_gates(Path(directory))

    def load(self, model, directory):
        load_gates(model, directory)


def make_conditioner(cfg: TrainConfig, objectives: Sequence[str]) -> Conditioner:
    """The run's conditioner: a :class:`PreferenceConditioner` when ``cfg.conditioned``, else the plain one."""
    return PreferenceConditioner(cfg, objectives) if cfg.conditioned else Conditioner()


def is_conditioned_folder(directory: str | Path) -> bool:
    return (Path(directory) / CONFIG_FILE).is_file()
