"""The app's and the CLI's way in: ``load_conditioned(run id or folder) -> (model, tokenizer, objectives)`` once, then
``generate_at(model, tokenizer, prompts, p, ...)`` for every p (changing p rewrites one tensor; nothing reloads); and
the preference a CLI command uses for a loaded run (``--preference`` or the run's own, made by ``pama.preference``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from .. import adapters as adp
from .. import models
from ..preference import Preference, PreferenceError
from .files import load_gates, read_conditioning
from .gates import ConditioningError, preference
from .prefix import prompts_at

__all__ = ["load_conditioned", "generate_at", "parse_preference", "resolve_preference"]


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


# ------------------------------------------------------------------------------------------------ the CLI's preference

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
