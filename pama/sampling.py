"""Batched sampling from a causal LM: our own decode loop instead of ``model.generate``.

Why not ``generate``: on a CPU, profiling a rollout of 8 × 48 tokens with SmolLM2-135M showed ~7% of the time in
``torch.multinomial`` (it draws one exponential per vocabulary entry: 49,152 per row per token), ~7% in the
unmerged LoRA matmuls, and float32 matmuls of a few rows running through MKL at a third of the memory bandwidth
(MKL's sgemm; oneDNN's matmul does better). Here the next token is drawn by inverting the CDF (one uniform per
row: the same distribution), a LoRA adapter is merged into the base weights for the duration of the loop and then
restored bit for bit, and the large float32 / bfloat16 layers run through oneDNN (``onednn_linears``, which the
trainer's forwards use too). The KV cache is written in place into buffers sized for the rollout (``SlabLayer``;
transformers' static cache, which attends over all its columns, measured no faster; this one attends over the filled
columns only), and with prepacked weights each gated MLP's gate and up projections run as one matmul (exact: the
same numbers bit for bit). Each saves 1-4% of a rollout's CPU time, with the same tokens. See docs/performance.md for
the measurements.

Semantics match ``generate`` with ``do_sample=True, top_k=0``: temperature, then nucleus (top-p) filtering,
then a draw; temperature 0 is greedy. A row stops at its first EOS (later positions are padding); the loop stops
when every row has. Seeded calls are reproducible on one device.

Rows that have ended leave the batch (session 8): their KV cache rows, positions and, for a conditioned adapter
with one preference per row, their preference rows are dropped, so the rest of the decode runs at the rows still
writing. Each row keeps the uniform it would have drawn in the full batch (the generator still draws one per row of
the full batch at every step), so a seeded call draws the same noise as before; the logits of the smaller batch can
differ by float rounding only. ``PAMA_DECODE_COMPACT=0`` (or ``compaction(False)``) keeps finished rows in the batch,
as before session 8. ``noise`` gives each row its own uniforms (``row_noise``): rows from differently seeded batches
can then share one decode batch and still draw what their own batch would have drawn.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import os
from typing import Iterable, Iterator

import torch


def filter_top_p(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero every token outside the smallest set whose mass reaches ``top_p`` (not renormalised)."""
    if top_p >= 1.0:
        return probs
    sorted_p, order = probs.sort(dim=-1, descending=True)
    before = sorted_p.cumsum(-1) - sorted_p            # mass of the more likely tokens
    sorted_p = sorted_p.masked_fill(before >= top_p, 0.0)  # the most likely token always stays (before = 0)
    return torch.zeros_like(probs).scatter_(-1, order, sorted_p)


def draw(logits: torch.Tensor, *, temperature: float, top_p: float = 1.0,
         generator: torch.Generator | None = None, u: torch.Tensor | None = None) -> torch.Tensor:
    """One token per row of ``logits`` (B, V): greedy at temperature 0, else inverse-CDF sampling. ``u`` (B, 1):
    the rows' uniforms in [0, 1), given instead of drawing them from ``generator``."""
    if not temperature or temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    probs = filter_top_p(probs, top_p)
    cdf = probs.cumsum(-1)
    if u is None:
        u = torch.rand((cdf.shape[0], 1), generator=generator, device=cdf.device, dtype=cdf.dtype)
    u = u.to(device=cdf.device, dtype=cdf.dtype).reshape(-1, 1) * cdf[:, -1:]
    # the first index whose cumulative mass exceeds u: zero-probability tokens can never be drawn
    return torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[-1] - 1).squeeze(-1)


def _lora_layers(model) -> list:
    try:
        from peft.tuners.lora import LoraLayer  # optional/heavy: a model without PEFT never needs it
    except ImportError:  # pragma: no cover - peft is a hard requirement
        return []
    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def _gates(layer) -> dict:
    """The preference gates of a conditioned adapter's layer ({adapter: gate}, set by ``pama.conditioning``)."""
    return getattr(layer, "pama_gates", None) or {}


def rows_differ(model) -> bool:
    """Whether a LoRA layer computes differently for each row of the batch: a conditioned adapter given one preference
    per row (``pama.conditioning.preference``). Then neither the batch-1 shared prompt prefix nor merged weights
    hold, so both are skipped."""
    return any(g.rows_differ for layer in _lora_layers(model) for g in _gates(layer).values())


def _delta_weight(layer, adapter: str) -> torch.Tensor:
    """The adapter's ΔW: PEFT's scaling · B A, or a conditioned adapter's scaling · B diag(g(p)) A."""
    gates = _gates(layer)
    return gates[adapter].delta_weight(layer, adapter) if adapter in gates else layer.get_delta_weight(adapter)


def _mergeable(layer) -> bool:
    """Plain (or one-preference conditioned) LoRA on a floating-point weight: ΔW is all the adapter adds."""
    weight = getattr(layer.get_base_layer(), "weight", None)
    if not isinstance(weight, torch.Tensor) or not weight.dtype.is_floating_point or weight.dtype.itemsize < 2:
        return False
    if any(g.rows_differ for g in _gates(layer).values()):
        return False
    return not any(getattr(layer, "use_dora", {}).get(a, False) for a in layer.active_adapters)


@contextlib.contextmanager
def merged_lora(model) -> Iterator[None]:
    """Inside: the active LoRA updates added into the base weights and the adapter path switched off (one matmul
    per layer instead of three). On exit the original weights are copied back, so nothing drifts across steps.
    Models without LoRA layers, or with merged ones already, pass through untouched."""
    layers = [m for m in _lora_layers(model) if not getattr(m, "merged", False) and not m.disable_adapters]
    if not all(_mergeable(layer) for layer in layers):  # DoRA, quantised or exotic layers: compute as they are
        yield
        return
    saved: list[tuple[torch.Tensor, torch.Tensor]] = []
    try:
        with torch.no_grad():
            for layer in layers:
                active = [a for a in layer.active_adapters if a in layer.lora_A]
                if not active:
                    continue
                weight = layer.get_base_layer().weight
                delta = sum(_delta_weight(layer, a) for a in active)
                saved.append((weight, weight.detach().clone()))
                weight.add_(delta.to(weight.dtype))
        with _adapters_disabled(layers):
            yield
    finally:
        with torch.no_grad():
            for weight, original in saved:
                weight.copy_(original)


@functools.lru_cache(maxsize=1)
def _onednn_linear():
    """oneDNN's matmul as inductor calls it. A private op: a torch that lacks it leaves every layer on ``F.linear``;
    whether it works is probed per dtype (``onednn_dtypes``)."""
    op = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if op is None or not torch.backends.mkldnn.is_available():
        return None
    return op


@functools.lru_cache(maxsize=8)
def _op_works(op, dtype: torch.dtype) -> bool:
    """Try ``op`` once in ``dtype`` against ``F.linear``: on a CPU without oneDNN kernels for the dtype (bfloat16 on an
    AVX2-only x86) it raises "could not create a primitive descriptor", so such layers must stay on ``F.linear``."""
    if dtype == torch.bfloat16 and not getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)():
        return False
    try:
        with torch.no_grad():
            g = torch.Generator().manual_seed(0)  # not the global RNG: seeded runs must not depend on probe order
            x, w, b = (torch.randn(shape, generator=g).to(dtype) for shape in ((3, 2, 8), (5, 8), (5,)))
            tol = 1e-5 if dtype == torch.float32 else 2e-2
            return torch.allclose(op(x, w, b, "none", [], "").float(), torch.nn.functional.linear(x, w, b).float(),
                                  atol=tol, rtol=tol)
    except (RuntimeError, TypeError):
        return False


@functools.lru_cache(maxsize=1)
def _reorder_op():
    """oneDNN's weight prepacking for ``_linear_pointwise`` (what inductor's freezing calls): a private op, absent in
    some torch builds."""
    return getattr(getattr(torch.ops, "mkldnn", None), "_reorder_linear_weight", None)


@functools.lru_cache(maxsize=8)
def _prepack_works(op, reorder, dtype: torch.dtype) -> bool:
    """Whether a weight prepacked by oneDNN (its blocked layout, chosen for this CPU's ISA) computes what ``F.linear``
    does, for both the row count it was packed for and another one."""
    if reorder is None or not _op_works(op, dtype):
        return False
    try:
        with torch.no_grad():
            g = torch.Generator().manual_seed(1)
            w, b = torch.randn((70, 40), generator=g).to(dtype), torch.randn((70,), generator=g).to(dtype)
            packed = reorder(w, 8)
            tol = 1e-5 if dtype == torch.float32 else 2e-2
            for x in (torch.randn((8, 40), generator=g).to(dtype), torch.randn((2, 13, 40), generator=g).to(dtype)):
                if not torch.allclose(op(x, packed, b, "none", [], "").float(),
                                      torch.nn.functional.linear(x, w, b).float(), atol=tol, rtol=tol):
                    return False
            return True
    except (RuntimeError, TypeError):
        return False


def prepack_requested() -> bool:
    """Whether the decode loop packs its large weights into oneDNN's blocked layout once per rollout instead of handing
    oneDNN the plain row-major weights at every step (the layout its kernel is built for: AB16b64a with both AVX-512
    and AVX2). On by default: measured 1.26x faster rollouts on AVX-512 and 1.35x under AVX2 emulation
    (benchmarks/results/avx2-idle.md). ``PAMA_ONEDNN_PREPACK=0`` turns it off: it costs a second copy of those
    weights (~510 MB for SmolLM2-135M in float32) for the duration of the rollout."""
    return os.environ.get("PAMA_ONEDNN_PREPACK", "1").strip().lower() not in ("0", "false", "no", "off")


def prepack_dtypes() -> tuple[torch.dtype, ...]:
    """The dtypes ``onednn_linears(..., prepack=True)`` can prepack on this CPU (a probe per dtype: where it fails, the
    layers run through oneDNN with plain weights, or ``F.linear``, as without prepacking)."""
    op = _onednn_linear()
    return tuple(d for d in onednn_dtypes() if _prepack_works(op, _reorder_op(), d)) if op is not None else ()


def bf16_forced_off() -> bool:
    """``PAMA_ONEDNN_BF16=0`` makes this process behave as on a CPU without bfloat16 support (AVX2-only x86), so the
    fall-back and the Train form's warning can be tested on any machine."""
    return os.environ.get("PAMA_ONEDNN_BF16", "").strip().lower() in ("0", "false", "no", "off")


def onednn_dtypes() -> tuple[torch.dtype, ...]:
    """The dtypes whose layers ``onednn_linears`` reroutes: each one whose oneDNN kernel exists and computes what
    ``F.linear`` does on this CPU."""
    op = _onednn_linear()
    if op is None:
        return ()
    return tuple(d for d in ONEDNN_DTYPES if _op_works(op, d) and not (d == torch.bfloat16 and bf16_forced_off()))


def bf16_native() -> bool:
    """Whether this CPU has bfloat16 arithmetic (AVX512-BF16 or AMX). Without it bfloat16 base weights are converted
    on every matmul and a training step is slower than in float32 (the Train form says so)."""
    if bf16_forced_off():
        return False
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks) and torch.bfloat16 in onednn_dtypes()


class _FrozenLinear(torch.autograd.Function):
    """y = x Wᵀ + b for a frozen W (a LoRA base layer): only x gets a gradient, x's gradient is g W, both through
    oneDNN."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(weight)
        return _onednn_linear()(x, weight, bias, "none", [], "")

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        return _onednn_linear()(grad, weight.t(), None, "none", [], ""), None, None


ONEDNN_DTYPES = (torch.float32, torch.bfloat16)  # both measured faster through oneDNN (docs/performance.md)


@contextlib.contextmanager
def onednn_linears(model, *, min_numel: int = 300_000, prepack: bool = False,
                   rows: int | None = None) -> Iterator[None]:
    """Inside: the model's large CPU float32 / bfloat16 ``nn.Linear`` layers run through oneDNN's matmul.

    Why: at the few rows of a decode step MKL's sgemm streams the weights at ~10 GB/s on the 2-core machine and
    oneDNN at ~15: SmolLM2-135M's 210 body matmuls per step took 44 ms against 33, its vocabulary projection
    16.7 ms against 7.1. With bfloat16 weights the reference forward took 0.68 s against 1.17 (docs/performance.md).
    A frozen layer (LoRA's base) on the gradient path goes through oneDNN both ways (``_FrozenLinear``); a layer
    with trainable weights stays on ``F.linear``. Below ``min_numel`` weights oneDNN's fixed cost per call (~16 µs)
    eats the gain, so small layers are left alone. A dtype oneDNN cannot run on this CPU (bfloat16 without AVX512)
    stays on ``F.linear`` (``onednn_dtypes``). Results differ from MKL's by rounding only.

    ``prepack``: for inference only (the decode loop, unless ``PAMA_ONEDNN_PREPACK=0``), each layer's weight is packed once
    on entry into oneDNN's blocked layout for ``rows`` rows (``prepack_requested``); a forward with gradients, or a
    weight changed in place since, uses the plain weight. The packed copies are freed on exit."""
    op, dtypes = _onednn_linear(), onednn_dtypes()
    layers = [m for m in model.modules() if type(m) is torch.nn.Linear and m.weight.device.type == "cpu"
              and m.weight.dtype in dtypes and m.weight.numel() >= min_numel]
    packed: dict[int, tuple[int, torch.Tensor]] = {}
    pairs: list[tuple] = []
    if prepack and layers:
        packable, reorder = prepack_dtypes(), _reorder_op()
        pairs = _gate_up_pairs(model, {id(m) for m in layers if m.weight.dtype in packable}) \
            if fused_mlp_requested() else []
        fused_ids = {id(lin) for _, gate, up in pairs for lin in (gate, up)}
        with torch.no_grad():
            for layer in layers:
                if layer.weight.dtype in packable and id(layer) not in fused_ids:
                    packed[id(layer)] = (layer.weight._version, reorder(layer.weight.detach(), rows))
            pairs = [(mlp, gate, up, reorder(torch.cat([gate.weight.detach(), up.weight.detach()]), rows),
                      None if gate.bias is None else torch.cat([gate.bias.detach(), up.bias.detach()]))
                     for mlp, gate, up in pairs]

    def make_forward(layer):
        def forward(x: torch.Tensor) -> torch.Tensor:
            weight, bias = layer.weight, layer.bias
            needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
            trainable = weight.requires_grad or (bias is not None and bias.requires_grad)
            # autocast's casts, mixed dtypes and trainable weights are F.linear's job
            if x.dtype != weight.dtype or torch.is_autocast_enabled("cpu") or (needs_grad and trainable):
                return torch.nn.functional.linear(x, weight, bias)
            if needs_grad:
                return _FrozenLinear.apply(x, weight, bias)
            version, pw = packed.get(id(layer), (None, None))
            return op(x, pw if version == weight._version else weight, bias, "none", [], "")
        return forward

    for layer in layers:
        layer.forward = make_forward(layer)  # an instance attribute shadows Linear.forward for the duration only
    for mlp, gate, up, pw, bias in pairs:
        mlp.forward = _fused_mlp_forward(op, mlp, gate, up, pw, bias)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward
        for mlp, *_ in pairs:
            del mlp.forward


def fused_mlp_requested() -> bool:
    """Whether the prepacked decode runs each gated MLP's gate and up projections as one matmul (``PAMA_FUSED_MLP``,
    default on; ``0`` keeps two). One oneDNN call over the two weights stacked computes bit for bit what the two calls
    compute (each output is its own dot product over the input; probed per dtype: ``_fusion_exact``) with 30 fewer
    calls per decode step on SmolLM2-135M."""
    return os.environ.get("PAMA_FUSED_MLP", "1").strip().lower() not in ("0", "false", "no", "off")


@functools.lru_cache(maxsize=8)
def _fusion_exact(op, reorder, dtype: torch.dtype) -> bool:
    """Whether oneDNN's matmul over two prepacked weights stacked along the outputs equals the two matmuls bit for bit
    on this CPU (else the MLP keeps its two calls)."""
    if reorder is None:
        return False
    try:
        with torch.no_grad():
            g = torch.Generator().manual_seed(2)
            w1, w2 = (torch.randn((n, 96), generator=g).mul_(0.05).to(dtype) for n in (160, 160))
            for rows in (8, 3, 1):
                x = torch.randn((rows, 1, 96), generator=g).to(dtype)
                apart = torch.cat([op(x, reorder(w, 8), None, "none", [], "") for w in (w1, w2)], -1)
                if not torch.equal(op(x, reorder(torch.cat([w1, w2]), 8), None, "none", [], ""), apart):
                    return False
            return True
    except (RuntimeError, TypeError):
        return False


def _plain_linear(mod):
    """The ``nn.Linear`` that computes ``mod``: itself, or a LoRA layer's base (the adapter's share then rides in the
    merged weight, checked at each call by ``_passes_through``); None otherwise."""
    if type(mod) is torch.nn.Linear:
        return mod
    base = mod.get_base_layer() if hasattr(mod, "get_base_layer") else None
    return base if type(base) is torch.nn.Linear else None


def _passes_through(mod) -> bool:
    """Whether calling ``mod`` now is just its plain linear layer: a Linear, or a LoRA layer with its adapters switched
    off (``merged_lora``) and not merged by PEFT itself."""
    return type(mod) is torch.nn.Linear or (bool(getattr(mod, "disable_adapters", False))
                                           and not getattr(mod, "merged", False))


def _gate_up_pairs(model, routed: set) -> list[tuple]:
    """(mlp, gate linear, up linear) of every gated MLP (``down_proj(act_fn(gate_proj(x)) * up_proj(x))``, the Llama
    family's) whose two projections are routed and packed here, match in shape and dtype, and fuse exactly."""
    op, reorder = _onednn_linear(), _reorder_op()
    pairs = []
    for mlp in model.modules():
        if not all(hasattr(mlp, a) for a in ("gate_proj", "up_proj", "down_proj", "act_fn")):
            continue
        if getattr(type(mlp).forward, "__qualname__", "").split(".")[0] not in ("LlamaMLP", "MistralMLP", "Qwen2MLP"):
            continue   # the fused forward below restates these classes' forward; others keep theirs
        gate, up = _plain_linear(mlp.gate_proj), _plain_linear(mlp.up_proj)
        if gate is None or up is None or id(gate) not in routed or id(up) not in routed:
            continue
        if gate.weight.dtype != up.weight.dtype or gate.in_features != up.in_features \
                or (gate.bias is None) != (up.bias is None) or not _fusion_exact(op, reorder, gate.weight.dtype):
            continue
        pairs.append((mlp, gate, up))
    return pairs


def _fused_mlp_forward(op, mlp, gate, up, packed, bias):
    """``mlp.forward`` with the gate and up projections as one matmul over their stacked prepacked weights; the class's
    own forward wherever that would not be exact: gradients, autocast, another dtype, a weight changed in place since
    the packing, or an active adapter on either projection."""
    versions, n, own = (gate.weight._version, up.weight._version), gate.out_features, type(mlp).forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        if (torch.is_grad_enabled() or x.dtype != gate.weight.dtype or torch.is_autocast_enabled("cpu")
                or (gate.weight._version, up.weight._version) != versions
                or not (_passes_through(mlp.gate_proj) and _passes_through(mlp.up_proj))):
            return own(mlp, x)
        both = op(x, packed, bias, "none", [], "")
        return mlp.down_proj(mlp.act_fn(both[..., :n]) * both[..., n:])
    return forward


@contextlib.contextmanager
def _adapters_disabled(layers: Iterable) -> Iterator[None]:
    layers = list(layers)
    before = [layer.disable_adapters for layer in layers]
    try:
        for layer in layers:
            layer._disable_adapters = True
        yield
    finally:
        for layer, flag in zip(layers, before):
            layer._disable_adapters = flag


def _cache_argument(model) -> str:
    """transformers 5.x calls the KV cache ``cache`` (``past_key_values`` is deprecated); older models still use it."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
    except (TypeError, ValueError):
        return "past_key_values"


MIN_SHARED_PREFIX = 8  # shorter common prefixes are not worth a second model call


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as generate() numbers them (else log-probs drift)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _row_starts(attention_mask: torch.Tensor, query_len: int) -> torch.Tensor:
    """Column of each left-padded row's first real token."""
    return attention_mask[:, :query_len].long().argmax(1)


def _prefix_length(input_ids: torch.Tensor, starts: torch.Tensor, query_len: int) -> int:
    longest = int((query_len - starts).min()) - 1
    if input_ids.shape[0] < 2 or longest < MIN_SHARED_PREFIX:
        return 0
    idx = starts.unsqueeze(1) + torch.arange(longest, device=input_ids.device)
    window = input_ids.gather(1, idx)
    same = (window == window[:1]).all(0).long().cumprod(0)
    return int(same.sum())


def shared_prefix_length(input_ids: torch.Tensor, attention_mask: torch.Tensor, query_len: int) -> int:
    """How many tokens every row starts with right after its left padding (the chat template's system part).

    At most each prompt's length − 1, so every row keeps the last prompt token that predicts its first response
    token."""
    return _prefix_length(input_ids, _row_starts(attention_mask, query_len), query_len)


def forward_sharing_prefix(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, query_len: int, *,
                           share: bool = True, **kwargs):
    """One forward over left-padded rows. With ``share``, the tokens every row starts with run once at batch 1 and
    their KV cache is repeated for the batch (exact: the same attention inputs; gradients sum over the rows through
    the repeat). The rows become [prefix | left padding | rest], so positions and the last columns are unchanged.
    Rows that compute differently (a conditioned adapter with one preference per row: ``rows_differ``) share nothing.

    Returns (outputs, L columns moved into the cache, the attention mask of the rearranged rows, prefix included:
    what a decode loop extends)."""
    starts = _row_starts(attention_mask, query_len)
    L = _prefix_length(input_ids, starts, query_len) if share and not rows_differ(model) else 0
    if L == 0:
        return model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask),
                     use_cache=kwargs.pop("use_cache", False), **kwargs), 0, attention_mask
    B, S = input_ids.shape
    prefix = input_ids[:1, int(starts[0]):int(starts[0]) + L]
    cols = torch.arange(S - L, device=input_ids.device).unsqueeze(0)
    src = cols + L * (cols >= starts.unsqueeze(1))  # the padding stays in front, the rest moves left by L
    rest_ids, rest_mask = input_ids.gather(1, src), attention_mask.gather(1, src)
    full_mask = torch.cat([attention_mask.new_ones(B, L), rest_mask], dim=1)
    cache_arg = _cache_argument(model)
    kwargs.pop("use_cache", None)
    head = model(input_ids=prefix, position_ids=torch.arange(L, device=input_ids.device).unsqueeze(0),
                 use_cache=True, logits_to_keep=1)
    cache = getattr(head, cache_arg)
    cache.batch_repeat_interleave(B)
    out = model(input_ids=rest_ids, attention_mask=full_mask, position_ids=position_ids(full_mask)[:, L:],
                use_cache=True, **{cache_arg: cache}, **kwargs)
    return out, L, full_mask


@functools.lru_cache(maxsize=1)
def slab_layer_class():
    """The class of a KV-cache layer written in place into buffers sized for the rollout (made once: transformers is
    heavy)."""
    from transformers.cache_utils import DynamicLayer  # heavy: only the decode loop needs it

    class SlabLayer(DynamicLayer):
        """``DynamicLayer`` whose keys and values live in preallocated (B, H, capacity, D) buffers: a decode step writes
        its one new column in place instead of ``torch.cat`` copying the whole cache (~5% of a decode step's CPU time
        for SmolLM2-135M at 8 rows). ``keys`` / ``values`` are views of the filled columns, so attention reads the same
        numbers; past the capacity the buffers grow (copied once)."""

        def __init__(self, keys: torch.Tensor, values: torch.Tensor, capacity: int):
            super().__init__()
            self.device, self.is_initialized = keys.device, True
            self._k, self._v = self._alloc(keys, capacity), self._alloc(values, capacity)
            self._n = keys.shape[-2]
            self._k[:, :, :self._n].copy_(keys)
            self._v[:, :, :self._n].copy_(values)
            self._views()

        @staticmethod
        def _alloc(like: torch.Tensor, capacity: int) -> torch.Tensor:
            return like.new_empty((*like.shape[:2], capacity, like.shape[3]))

        def _views(self) -> None:
            self.keys, self.values = self._k[:, :, :self._n], self._v[:, :, :self._n]

        def update(self, key_states, value_states, *args, **kwargs):
            n = self._n + key_states.shape[-2]
            if n > self._k.shape[2]:
                grown = max(n, 2 * self._k.shape[2])
                for name in ("_k", "_v"):
                    buf = self._alloc(getattr(self, name), grown)
                    buf[:, :, :self._n].copy_(getattr(self, name)[:, :, :self._n])
                    setattr(self, name, buf)
            self._k[:, :, self._n:n].copy_(key_states)
            self._v[:, :, self._n:n].copy_(value_states)
            self._n = n
            self._views()
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self._n

        def crop(self, tokens_to_remove: int) -> None:
            if tokens_to_remove < 0 and self._n:
                self._n = max(0, self._n + tokens_to_remove)
                self._views()
            elif tokens_to_remove > 0:
                super().crop(tokens_to_remove)

        def batch_repeat_interleave(self, repeats: int) -> None:
            self._k, self._v = self._k.repeat_interleave(repeats, 0), self._v.repeat_interleave(repeats, 0)
            self._views()

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            self._k, self._v = self._k[indices], self._v[indices]
            self._views()

        def reset(self) -> None:
            self._n = 0
            self._views()

        def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
            self.batch_select_indices(beam_idx.to(self._k.device))

    return SlabLayer


def slab_cache_enabled() -> bool:
    """Whether the decode loop writes its KV cache in place into preallocated buffers (``PAMA_DECODE_SLAB``, default
    on; ``0`` keeps transformers' growing cache)."""
    return os.environ.get("PAMA_DECODE_SLAB", "1").strip().lower() not in ("0", "false", "no", "off")


def _to_slab(cache, capacity: int) -> None:
    """Turn a ``DynamicCache``'s plain layers into ``SlabLayer``s holding ``capacity`` columns (others stay as they
    are: sliding windows, quantised or linear-attention layers keep their own update)."""
    from transformers.cache_utils import DynamicLayer  # heavy: only the decode loop needs it

    slab = slab_layer_class()
    layers = getattr(cache, "layers", None)
    if not isinstance(layers, list):
        return
    for i, layer in enumerate(layers):
        if type(layer) is DynamicLayer and layer.is_initialized and layer.keys is not None and layer.keys.dim() == 4:
            layers[i] = slab(layer.keys, layer.values, max(capacity, layer.keys.shape[-2]))


_COMPACT: list[bool] = []  # compaction(...) overrides, innermost last


def compaction_enabled() -> bool:
    """Whether rows that have ended leave the decode batch: ``compaction(...)`` if inside one, else
    ``PAMA_DECODE_COMPACT`` (default on)."""
    if _COMPACT:
        return _COMPACT[-1]
    return os.environ.get("PAMA_DECODE_COMPACT", "1").strip().lower() not in ("0", "false", "no", "off")


@contextlib.contextmanager
def compaction(enabled: bool) -> Iterator[None]:
    """Inside: finished rows leave the decode batch (True) or stay in it, computing padding, as before session 8
    (False; what benchmarks/bench_eval.py times as the old way)."""
    _COMPACT.append(bool(enabled))
    try:
        yield
    finally:
        _COMPACT.pop()


def row_noise(seed: int, rows: int, steps: int, device=None) -> torch.Tensor:
    """(rows, steps) uniforms: what ``sample(..., seed=seed)`` on a batch of ``rows`` rows draws for row i at step t
    (one uniform per row of the full batch per step, from one generator seeded with ``seed``)."""
    g = torch.Generator(device=device or "cpu")
    g.manual_seed(int(seed))
    return torch.rand((steps, rows), generator=g, device=device or "cpu").T.contiguous()


def _row_holders(model) -> list:
    """The preference holders whose rows differ (one preference per row): their rows follow the batch's."""
    seen = {}
    for layer in _lora_layers(model):
        for g in _gates(layer).values():
            h = getattr(g, "_holder", None)
            if h is not None and g.rows_differ and h.p is not None and h.p.shape[0] > 1:
                seen[id(h)] = h
    return list(seen.values())


def sample(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, max_new_tokens: int,
           eos_ids: Iterable[int], pad_id: int, temperature: float = 1.0, top_p: float = 1.0,
           seed: int | None = None, merge_lora: bool = True, share_prefix: bool = True,
           noise: torch.Tensor | None = None, compact: bool | None = None) -> torch.Tensor:
    """New token ids (B, ≤ max_new_tokens) after left-padded prompts; positions after a row's EOS hold ``pad_id``.

    ``noise`` (B, ≥ max_new_tokens): each row's uniforms, used instead of ``seed`` (``row_noise``). ``compact``:
    whether rows that have ended leave the batch (default ``compaction_enabled()``).

    The loop runs in inference mode (no version counters or view tracking: 3% of a rollout); the ids are cloned out
    of it, so callers may feed them to a forward that needs gradients."""
    if noise is not None and (noise.shape[0] != input_ids.shape[0] or noise.shape[1] < max_new_tokens):
        raise ValueError(f"noise must be (rows, ≥ max_new_tokens) = ({input_ids.shape[0]}, {max_new_tokens}), "
                         f"got {tuple(noise.shape)}")
    with torch.inference_mode():
        new = _sample(model, input_ids, attention_mask, max_new_tokens=max_new_tokens, eos_ids=eos_ids,
                      pad_id=pad_id, temperature=temperature, top_p=top_p, seed=seed, merge_lora=merge_lora,
                      share_prefix=share_prefix, noise=noise,
                      compact=compaction_enabled() if compact is None else bool(compact))
    return new.clone()


def _sample(model, input_ids, attention_mask, *, max_new_tokens, eos_ids, pad_id, temperature, top_p, seed,
            merge_lora, share_prefix, noise=None, compact=True):
    device = input_ids.device
    B, Q = input_ids.shape
    sampling = bool(temperature and temperature > 0)
    generator = None
    if seed is not None and sampling and noise is None:
        generator = torch.Generator(device=device)
        generator.manual_seed(int(seed))
    eos = torch.tensor(sorted(set(eos_ids)), device=device, dtype=input_ids.dtype)
    next_pos = position_ids(attention_mask)[:, -1:] + 1
    kwargs = dict(use_cache=True, logits_to_keep=1)
    cache_arg = _cache_argument(model)
    out_tokens = torch.full((B, max_new_tokens), int(pad_id), dtype=input_ids.dtype, device=device)
    rows = torch.arange(B, device=device)          # the original row of each row still in the batch
    done = torch.zeros(B, dtype=torch.bool, device=device)
    steps = 0
    holders = _row_holders(model) if compact else []
    saved = [(h, h.p) for h in holders]
    merge = merged_lora(model) if merge_lora else contextlib.nullcontext()
    try:
        with merge, onednn_linears(model, prepack=prepack_requested(), rows=B):
            out, L, mask = forward_sharing_prefix(model, input_ids, attention_mask, Q, share=share_prefix, **kwargs)
            attn = torch.cat([mask, mask.new_ones(B, max_new_tokens)], dim=1)  # the cache's column layout
            cache = getattr(out, cache_arg)
            if slab_cache_enabled() and max_new_tokens > 1:
                _to_slab(cache, attn.shape[1])
            for t in range(max_new_tokens):
                u = None
                if sampling:
                    if noise is not None:
                        u = noise[rows, t].to(device).unsqueeze(1)
                    else:  # one uniform per row of the full batch, as before rows could leave it
                        u = torch.rand((B, 1), generator=generator, device=device)[rows]
                token = draw(out.logits[:, -1], temperature=temperature, top_p=top_p, u=u)
                steps = t + 1
                if compact:
                    out_tokens[rows, t] = token
                    ended = torch.isin(token, eos)
                    if t == max_new_tokens - 1 or bool(ended.all()):
                        break
                    if bool(ended.any()):  # the rows that ended leave the batch
                        keep = (~ended).nonzero().squeeze(1)
                        rows, token, next_pos, attn = rows[keep], token[keep], next_pos[keep], attn[keep]
                        cache.batch_select_indices(keep)
                        for h in holders:
                            h.p = h.p[keep.to(h.p.device)]
                else:
                    token = torch.where(done, torch.full_like(token, pad_id), token)
                    out_tokens[:, t] = token
                    done |= torch.isin(token, eos)
                    if t == max_new_tokens - 1 or bool(done.all()):
                        break
                out = model(input_ids=token.unsqueeze(1), attention_mask=attn[:, :Q + t + 1],
                            position_ids=next_pos + t, **{cache_arg: cache}, **kwargs)
                cache = getattr(out, cache_arg)
    finally:
        for h, p in saved:
            h.p = p
    return out_tokens[:, :steps]
