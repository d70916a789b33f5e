"""The Train form's widget values → a validated ``TrainConfig`` (``SweepConfig`` for a grid), never touching the
store. Mistakes come back as ``ConfigError`` / ``UIError`` saying what to fix."""
from __future__ import annotations

import warnings
from typing import Any, Mapping, Sequence

from ..config import (CONDITIONED_PRESET, PRESETS, SweepConfig, TrainConfig, from_dict, other_methods_settings,
                      preset_values)
from ..preference import PreferenceError, parse_weights
from .settings import UIError

# the widgets of one mode only: a sweep's evaluation settings; the weights of "one preference" (a sweep's grid sets
# each run's preference, so a sweep config has none)
SWEEP_ONLY = ("points", "eval_samples", "eval_prompts", "eval_max_new_tokens", "eval_seed")
RUN_ONLY = ("preference",)


# the preset selector's choices: none, then config.PRESETS (docs/PAMA_SPEC.md)
PRESET_CHOICES = ("(none)", *PRESETS)
# what the form keeps of its own widgets when a preset is chosen: every widget has a value, so the preset replaces the
# rest of what it sets (objectives, anchor, ...); the chosen method and model stay as picked
FORM_WINS_OVER_PRESET = ("method", "model")

MODES = ("one preference", "a sweep grid (a whole front)", "one conditioned adapter (whole front)")


def mode_is_sweep(mode: str) -> bool:
    """A grid and a conditioned adapter both run as a sweep (the conditioned one: one run, evaluated along the
    preference grid as points of kind ``conditioned``)."""
    return mode in MODES[1:]


def mode_is_conditioned(mode: str) -> bool:
    return mode == MODES[2]


def parse_floats(text: str, what: str = "preference") -> list[float]:
    """'0.3, 0.7' → [0.3, 0.7]; '' → []; anything else → UIError naming the bad entry (``pama.preference`` parses:
    finite, non-negative numbers)."""
    try:
        return list(parse_weights(text, what=what))
    except PreferenceError as err:
        raise UIError(str(err)) from None


def split_objectives(chosen: Sequence[str], extra: str = "") -> list[str]:
    out = [c.strip() for c in chosen if c and c.strip()]
    # extra specs may hold commas inside parameters (length:target=20,unit=words), so they go one per line
    out += [line.strip() for line in (extra or "").splitlines() if line.strip()]
    return out


def _conditioned_defaults(data: dict) -> dict:
    """"One conditioned adapter" with no preset: the fields still at the form's plain defaults take
    config.CONDITIONED_PRESET's values (the settings that give a visible front soonest); a field the user changed
    keeps its value. The preset's name is stored with the run's config."""
    plain = SweepConfig().to_dict()
    preset = preset_values(CONDITIONED_PRESET, set(plain), data.get("method"))
    out = dict(data)
    for k, v in preset.items():
        if k not in out or out[k] == plain.get(k):
            out[k] = v
    out["preset"] = CONDITIONED_PRESET
    return out


def build_train_config(form: Mapping[str, Any], *, sweep: bool = False):
    """Widget values → a validated TrainConfig (SweepConfig for a grid), or ConfigError / UIError saying what
    is wrong. ``py:`` objectives are refused (they would run code typed in a browser)."""
    other_mode = RUN_ONLY if sweep else SWEEP_ONLY
    data = {k: v for k, v in form.items() if v is not None and k not in other_mode}
    if data.get("preset") in (None, "", PRESET_CHOICES[0]):
        data.pop("preset", None)
        if sweep and data.get("conditioned"):
            data = _conditioned_defaults(data)
    else:   # the preset's settings replace the widgets' values (but the method and model picked), then the rest
        fields = {f for f in (SweepConfig if sweep else TrainConfig)().to_dict()} - set(other_mode)
        preset = preset_values(data["preset"], fields, data.get("method"))
        data.update({k: v for k, v in preset.items() if k not in FORM_WINS_OVER_PRESET})
    # the anchor box is on the form whatever the method: another method's setting is left out here (a config
    # refuses it), as the other mode's widgets are
    data = {k: v for k, v in data.items() if k not in other_methods_settings(data.get("method"))}
    with warnings.catch_warnings():  # the preference text becomes a Preference here (normalised: no warning shown)
        warnings.simplefilter("ignore")
        cfg = from_dict(SweepConfig if sweep else TrainConfig, data, source="form")
        return cfg.validate(allow_python=False)
