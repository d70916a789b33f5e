"""One adapter for the whole front: a preference-conditioned LoRA adapter (docs/conditioned.md).

Two forms, chosen by ``TrainConfig.conditioning``:

- ``svd`` (Panacea, Zhong et al. 2024): an ordinary PEFT LoRA adapter of rank r + n (n objectives) plus one gate per
  LoRA layer, so that the layer adds ΔW(p) = B · diag(σ_1..σ_r, s·p_1..s·p_n) · A; every row of a batch may carry its
  own preference.
- ``prefix`` (Conditioned Language Policies, RiC): a plain LoRA adapter; the preference is written as a line before
  the user prompt ("Preference weights: informativeness 0.30, conciseness 0.70").

One concern per module (import-linter keeps them one-way: ``conditioner | loader`` → ``files | prefix`` → ``gates``):

- ``gates``: the svd form's surgery on PEFT's LoRA layers, the model's registry of conditioned adapters, and
  ``preference(model, p)``, the context in which the gates compute at p;
- ``prefix``: the prefix form's preference line and the prompts as its adapter reads them;
- ``files``: the adapter folder (``conditioning.json``, ``preference_gates.safetensors``), ``load_gates``, and
  ``materialize`` / ``export_at`` (a conditioned adapter at one p as an ordinary LoRA adapter);
- ``loader``: the app's and the CLI's way in, ``load_conditioned`` once, then ``generate_at`` at any p;
- ``conditioner``: the trainer's side, ``Conditioner`` (draws, feeds and saves preferences).

Preferences are parsed and checked by ``pama.preference`` only; these modules turn its errors into
``ConditioningError``. Everything is re-exported here: ``from pama.conditioning import X`` and
``pama.conditioning.X`` (what the app, the CLI, the trainer and the tests use; tests patch ``load_conditioned`` and
``generate_at`` here, where ``pama.app.hosting`` looks them up) keep working.
"""
from __future__ import annotations

from .conditioner import GRID_NOISE, Conditioner, PreferenceConditioner, make_conditioner
from .files import (CONFIG_FILE, GATES_FILE, export_at, is_conditioned_folder, load_gates, materialize,
                    read_conditioning, save_gates)
from .gates import (ConditionedAdapter, ConditioningError, PreferenceGate, _targets, attach_gates, check_preference,
                    conditioned_adapters, preference, register_prefix)
from .loader import generate_at, load_conditioned, parse_preference, resolve_preference
from .prefix import PREFIX_HEAD, fit_prompt, prefix_text, prompt_prefix, prompts_at

__all__ = [
    "ConditioningError", "ConditionedAdapter", "PreferenceGate", "attach_gates", "register_prefix", "preference",
    "check_preference", "prompt_prefix", "prompts_at", "save_gates", "load_gates", "read_conditioning",
    "materialize", "export_at", "conditioned_adapters", "load_conditioned", "generate_at", "Conditioner",
    "make_conditioner", "parse_preference", "resolve_preference", "fit_prompt", "PreferenceConditioner",
    "prefix_text", "is_conditioned_folder", "CONFIG_FILE", "GATES_FILE", "PREFIX_HEAD", "GRID_NOISE",
]
