"""Run configurations: small frozen dataclasses per concern with help text (docs/config.md), composed into
``TrainConfig`` and ``SweepConfig``, loadable from flat YAML and overridable by CLI flags (TRL's style).

Precedence: dataclass defaults < ``--config FILE`` < explicit flags. ``validate()`` says what is wrong and never
touches the store, so bad input is refused before anything is written.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import math
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .preference import Preference, PreferenceError, PreferenceWarning

METHODS = ("pama", "morlhf", "mgda", "trl-grpo")
# trl-grpo: TRL's GRPOTrainer on the same model, LoRA, prompts and objectives (pama.trl_grpo, docs/PAMA_SPEC.md)
TRL_AGGREGATIONS = ("sum_then_normalize", "normalize_then_sum")
# the methods that train a preference-conditioned adapter (docs/conditioned.md): a per-sample preference enters PAMA's
# anchored combination and MORLHF's scalarisation; MGDA's per-objective gradients have no place for it
CONDITIONED_METHODS = ("pama", "morlhf")
CONDITIONING_FORMS = ("svd", "prefix")
PREFERENCE_SAMPLING = ("dirichlet", "grid")
GRANULARITIES = ("token", "batch")
EOS_CREDITS = ("answer", "eos")   # where eos_weight's term lands (pama.algorithm.end_credit)
SCALE_REWARDS = ("none", "batch")   # how each objective's rewards are scaled before the KL joins them (trainer)
LR_SCHEDULES = ("constant", "linear", "cosine")   # the learning rate over a run's steps (pama.algorithm.scheduled_lr)
KL_SHAPINGS = ("token", "answer-mean", "loss")   # how the KL penalty enters: the rewards (pama.algorithm.kl_penalty)
#                                                  or, "loss", the policy loss (pama.algorithm.kl_loss)
# report_to's values (TRL's option and names): pama.callbacks holds the integrations
REPORT_TO = ("tensorboard", "mlflow", "none")
# the pair whose two ends separate fastest per CPU minute on the embedded model: docs/learnability.md
DEFAULT_OBJECTIVES = ["informativeness", "conciseness"]
# the Train form's preference: conciseness first, the end that moves out of the base model's interval in minutes
DEFAULT_PREFERENCE = [0.25, 0.75]
# named settings (`--preset NAME`, the Train form's preset): filled in before the config file and the flags, which win.
# paper-exp1 = the paper's first experiment (GPT-2 on IMDb: positive sentiment + length) on the embedded model; every
# setting that differs from the paper, and why: docs/PAMA_SPEC.md ("The paper-exp1 preset")
PRESETS: dict[str, dict[str, Any]] = {
    "paper-exp1": {
        "model": "smollm2-135m",                         # the embedded model (the paper: GPT-2 125M)
        "method": "pama", "anchor": 1.0,                 # λ = 1: the paper's PAMA (the preference does not enter)
        "objectives": ["sentiment", "length"],           # length = clip(chars/140, 0.5, 1.5), the paper's reward
        "prompts": "builtin:train:review", "eval_prompts": "builtin:heldout:review",
        "kl_coef": 0.2, "target_kl": 3.0,                # the spec: β starts at 0.2, adaptive toward 3 nats
        "ppo_epochs": 4, "mini_batches": 1,              # > 1 epoch: the ratio leaves 1, so the clip ε = 0.2 acts
        "samples_per_prompt": 1,                         # the paper's PPO: one response per prompt, no groups
        "gamma": 1.0, "lam": 0.95, "cliprange": 0.2, "cliprange_value": 0.2, "vf_coef": 0.1,
        "temperature": 1.0, "top_p": 1.0, "noon": "auto", "max_new_tokens": 64,
        # the same experiment by another method: GRPO needs groups (k ≥ 2), so trl-grpo gets 4 responses per prompt
        "for_method": {"trl-grpo": {"samples_per_prompt": 4}},
    },
    # a visible front soon: the recipe of the conditioned demo shipped until 2026-12-05 (informativeness vs
    # conciseness, the default pair: the settings that separated fastest per CPU minute, docs/learnability.md),
    # evaluated in rounds that stop once the ends are apart (docs/fronts.md). `sweep --conditioned` without
    # --config/--preset and the Train form's "one conditioned adapter" use it; benchmarks/bench_time_to_front.py
    # measures it (docs/performance.md)
    "quick-front": {
        "method": "pama", "anchor": 0.3, "conditioned": True, "conditioning": "svd",
        "batch_size": 16, "samples_per_prompt": 4, "max_new_tokens": 128, "temperature": 0.7,
        "learning_rate": 0.001, "target_modules": ["all-linear"], "kl_coef": 0.1, "target_kl": 4.0,
        "kl_horizon": 100, "missing_eos_penalty": 0.5, "steps": 56, "save_every": 14,
        "eval_samples": 128, "eval_max_new_tokens": 128, "eval_temperature": 0.7, "eval_round": 32,
        "eval_min_prompts": 64,
    },
    # the trade-off that is not answer length: demo/front's recipe (demo/front/sweep.yaml, docs/learnability.md
    # sections 15 and 17): sentiment vs relevance on complaints that ask for two or three sentences, GAE λ = 1 (the
    # whole answer hears its score) and a small missing-EOS penalty, the ends apart raw and length-controlled at 40
    # steps; a FIXED β = 0.05 (section 24: an adaptive β, under Noon PPO, ratchets up until the KL penalty outweighs
    # the objectives, and the ends meet again with longer training)
    "complaints": {
        "objectives": ["sentiment", "relevance"],
        "prompts": "builtin:premise-brief-train", "eval_prompts": "builtin:premise-brief-heldout",
        "method": "pama", "anchor": 0.3, "batch_size": 16, "samples_per_prompt": 4, "max_new_tokens": 128,
        "temperature": 0.7, "learning_rate": 0.001, "target_modules": ["all-linear"], "kl_coef": 0.05,
        "target_kl": 0.0, "kl_horizon": 100, "lam": 1.0, "missing_eos_penalty": 0.1, "steps": 40,
        "eval_samples": 128, "eval_max_new_tokens": 256, "eval_temperature": 0.7,
    },
}
# the preset a conditioned sweep starts from when none is named (the CLI) or every field is left at its default
# (the Train form)
CONDITIONED_PRESET = "quick-front"


_NOON_WORDS = {"true": "true", "1": "true", "yes": "true", "on": "true",
               "false": "false", "0": "false", "no": "false", "off": "false"}


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the field and what is accepted."""


def _make_preference(value: Any, objectives: Any) -> tuple[Preference | None, str | None]:
    """(the config's Preference or None when empty, the error saying why it cannot be made or None)."""
    if value is None or (isinstance(value, (str, list, tuple)) and not (value.strip() if isinstance(value, str)
                                                                          else value)):
        return None, None
    names = list(objectives) if isinstance(objectives, list) and all(isinstance(o, str) for o in objectives) else []
    try:
        return Preference.parse(value, len(names) or None, objectives=names), None
    except PreferenceError as err:
        return None, str(err)


def _help(text: str, **kw) -> Any:
    return field(metadata={"help": text}, **kw)


# ---------------------------------------------------------------------------------------------------------------------
# settings per concern (docs/config.md): small frozen dataclasses, composed into TrainConfig and SweepConfig. Each
# field has one default, here; the flat names (`anchor`, `eval_seed`) are the YAML keys and the --flags.

@dataclass(frozen=True)
class PamaSettings:
    """PAMA's own settings (``method: pama``). A run of another method has none and refuses them when given."""
    anchor: float = _help("PAMA anchor strength λ in [0, 1]: 1 = the paper's PAMA (ignores the preference), "
                          "0 = linear scalarisation with the preference.", default=0.5)
    granularity: str = _help("PAMA combination per 'token' or from batch-mean advantages ('batch').", default="token")

    def errors(self) -> list[str]:
        out = []
        if not 0.0 <= self.anchor <= 1.0:  # NaN fails this too
            out.append(f"anchor must lie in [0, 1], not {self.anchor}")
        if self.granularity not in GRANULARITIES:
            out.append(f"granularity must be 'token' or 'batch', not {self.granularity!r}")
        return out


@dataclass(frozen=True)
class MorlhfSettings:
    """MORLHF (linear scalarisation with the preference) has no setting of its own yet; this is where one goes."""

    def errors(self) -> list[str]:
        return []


@dataclass(frozen=True)
class MgdaSettings:
    """MGDA (min-norm gradient weights) has no setting of its own yet; this is where one goes."""

    def errors(self) -> list[str]:
        return []


@dataclass(frozen=True)
class TrlGrpoSettings:
    """TRL's GRPO (``method: trl-grpo``, pama.trl_grpo): how its GRPOTrainer aggregates the objectives' rewards."""
    aggregation: str = _help(
        "How TRL's GRPO combines the objectives (its multi_objective_aggregation; reward_weights = the preference): "
        "sum_then_normalize (weighted sum of raw rewards, then normalised within each prompt's group) or "
        "normalize_then_sum (each objective normalised within the group first, then the weighted sum).",
        default="sum_then_normalize")

    def errors(self) -> list[str]:
        if self.aggregation not in TRL_AGGREGATIONS:
            return [f"aggregation must be {' or '.join(TRL_AGGREGATIONS)}, not {self.aggregation!r}"]
        return []


# the method's own settings, one class per method (a new method adds its class here and in pama.methods.METHODS)
METHOD_SETTINGS: dict[str, type] = {"pama": PamaSettings, "morlhf": MorlhfSettings, "mgda": MgdaSettings,
                                     "trl-grpo": TrlGrpoSettings}
assert tuple(METHOD_SETTINGS) == METHODS
_METHOD_OF = {cls: name for name, cls in METHOD_SETTINGS.items()}


@dataclass(frozen=True)
class ConditioningSettings:
    """Whether and how one adapter learns the whole front, taking the preference as an input (docs/conditioned.md)."""
    conditioned: bool = _help(
        "[ours] Train ONE preference-conditioned adapter for the whole front (method pama or morlhf): each prompt "
        "group draws its own preference, which the policy and the value heads receive and each sample's "
        "combination uses. `preference` is then only the default for generate/evaluate (docs/conditioned.md).",
        default=False)
    conditioning: str = _help("How a conditioned adapter receives the preference: svd (Panacea's SVD-LoRA: it scales "
                              "n extra singular values of every LoRA layer) or prefix (a plain LoRA; the weights are "
                              "written before the prompt).", default="svd")
    preference_sampling: str = _help("How a conditioned run draws each prompt group's preference: dirichlet "
                                     "(symmetric, preference_alpha) or grid (an evenly spaced simplex grid, cycled, "
                                     "plus small noise).", default="dirichlet")
    preference_alpha: float = _help("Concentration α of the symmetric Dirichlet of a conditioned run's preferences "
                                    "(1 = uniform over the simplex; < 1 favours the ends, and 0.1 kept an "
                                    "adapter's ends better at twice the steps than 0.3: docs/learnability.md "
                                    "section 31).", default=1.0)

    def errors(self, method: str, objectives: list[str]) -> list[str]:
        out = []
        if self.conditioned and method in METHODS and method not in CONDITIONED_METHODS:
            why = ("TRL's GRPOTrainer takes one fixed reward_weights for the whole run, not a preference per sample"
                   if method == "trl-grpo" else "its per-objective gradients take no per-sample preference")
            out.append(f"conditioned: true works with method {' or '.join(CONDITIONED_METHODS)}, not "
                       f"{method} ({why}); use --method pama, or drop --conditioned")
        if self.conditioned and len(objectives) < 2:
            out.append("a conditioned adapter needs at least two objectives to trade off (e.g. --objectives "
                       "informativeness,conciseness)")
        if self.conditioning not in CONDITIONING_FORMS:
            out.append(f"conditioning must be {' or '.join(CONDITIONING_FORMS)}, not {self.conditioning!r}")
        if self.preference_sampling not in PREFERENCE_SAMPLING:
            out.append(f"preference_sampling must be {' or '.join(PREFERENCE_SAMPLING)}, not "
                       f"{self.preference_sampling!r}")
        if not self.preference_alpha > 0:
            out.append(f"preference_alpha must be > 0 (1 = uniform over the simplex), not {self.preference_alpha}")
        return out


@dataclass(frozen=True)
class GridSettings:
    """A sweep's grid of preferences: one run each (a conditioned sweep: the points its one run is evaluated at)."""
    points: int = _help("Preferences per edge of the simplex grid (2 objectives: K points; 3: the K-grid).",
                        default=5)

    def errors(self) -> list[str]:
        return [] if self.points > 0 else [f"points must be a positive integer, not {self.points}"]


@dataclass(frozen=True)
class EvalSettings:
    """How a sweep evaluates each point on held-out prompts (the same prompts and seed for every point)."""
    eval_prompts: str = _help("Held-out prompts for evaluation.", default="builtin:heldout")
    eval_samples: int = _help("Held-out prompts evaluated per point.", default=128)
    eval_max_new_tokens: int = _help("Tokens generated per evaluation response (more than max_new_tokens leaves "
                                     "room to see whether answers end on their own).", default=96)
    eval_seed: int = _help("Seed of the evaluation sampling (the same for every point).", default=1234)
    eval_temperature: float = _help(
        "Sampling temperature of the evaluation. 0.7 reads fluently from a 135M model; but a policy that learned to "
        "stop by sampling EOS at the rollouts' temperature (1.0) stops less often at 0.7, so set it to "
        "`temperature` to evaluate exactly the policy that was trained (docs/learnability.md).", default=0.7)
    eval_round: int = _help(
        "Stop early: evaluate the front's ends this many prompts at a time (a multiple of 32) until their 95% "
        "intervals are apart, then every other point on the prompts they used (docs/fronts.md). 0 = every point on "
        "all eval_samples prompts.", default=0)
    eval_min_prompts: int = _help("With eval_round: the fewest prompts the ends are evaluated on before stopping.",
                                  default=64)

    def errors(self) -> list[str]:
        out = [f"{name} must be a positive integer, not {getattr(self, name)}"
               for name in ("eval_samples", "eval_max_new_tokens") if getattr(self, name) <= 0]
        if not 0 <= self.eval_seed < 2**32:
            out.append(f"eval_seed must lie in [0, 2^32), not {self.eval_seed}")
        if self.eval_round < 0 or self.eval_round % 32:
            out.append(f"eval_round must be 0 (off) or a positive multiple of the evaluation batch (32), not "
                       f"{self.eval_round}")
        if self.eval_min_prompts < 0:
            out.append(f"eval_min_prompts must be ≥ 0, not {self.eval_min_prompts}")
        return out


class _Composed:
    """A config of shared fields and settings parts: made from flat names (``TrainConfig(anchor=0.3)``) or from its
    parts, read by flat names too (``cfg.anchor`` is ``cfg.method_settings.anchor``), written flat (``to_dict``) and
    never changed once made (``dataclasses.replace`` makes another). ``_PARTS``: part attribute → its classes."""

    _PARTS: dict = {}

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(
            f"{type(self).__name__}.{name} cannot be set: a config is fixed once it is made (the run's Preference "
            f"and its parts are made from it); make a new one: dataclasses.replace(cfg, {name}=...)")

    def __delattr__(self, name: str) -> None:
        self.__setattr__(name, None)

    def __getattr__(self, name: str) -> Any:
        """Only for names not found the normal way: a part's field (or, for a sweep, anything of its run)."""
        parts = [self.__dict__.get(p) for p in type(self)._PARTS] if not name.startswith("_") else []
        for obj in parts:
            if obj is not None and not isinstance(obj, _Composed) and name in _field_names(type(obj)):
                return getattr(obj, name)
        for obj in parts:
            if isinstance(obj, _Composed):
                return getattr(obj, name)
        raise AttributeError(self._no_such(name))

    def _no_such(self, name: str) -> str:
        return f"{type(self).__name__} has no attribute {name!r}"

    def to_dict(self) -> dict:
        """The flat form (YAML files, flags, the store, exports): the shared fields, then each part's fields."""
        out: dict = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name not in type(self)._PARTS:
                out[f.name] = copy.deepcopy(value)
            elif isinstance(value, _Composed):
                out.update(value.to_dict())
            elif value is not None:
                out.update(dataclasses.asdict(value))
        return out


@functools.lru_cache(maxsize=None)
def _field_names(cls) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


@functools.lru_cache(maxsize=None)
def _flat_fields(cls) -> tuple[tuple[str, Any, dataclasses.Field, type], ...]:
    """(flat name, type, field, the class that holds it) of a config class, in the order of --help and to_dict."""
    out: list = []
    hints = typing.get_type_hints(cls)
    parts = getattr(cls, "_PARTS", {})
    for f in dataclasses.fields(cls):
        if f.name in parts:
            for part_cls in parts[f.name]:
                out += _flat_fields(part_cls)
        else:
            out.append((f.name, hints[f.name], f, cls))
    return tuple(out)


def _method_fields() -> dict[str, str]:
    """Flat name of a method's own setting → that method."""
    return {name: _METHOD_OF[owner] for name, _, _, owner in _flat_fields(TrainConfig) if owner in _METHOD_OF}


def other_methods_settings(method: str | None) -> frozenset[str]:
    """Flat names of the settings of every method but ``method`` (None: the default method), which it refuses."""
    method = _default(TrainConfig.__dataclass_fields__["method"]) if method is None else method
    return frozenset(name for name, owner in _method_fields().items() if owner != method)


def _not_for(names, method: str) -> str:
    owners = _method_fields()
    return "; ".join(f"{n} is a setting of method {owners[n]} only, and this run's method is {method}: drop {n} "
                     f"(--{n.replace('_', '-')}), or use --method {owners[n]}" for n in names)


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


def _value_errors(cfg) -> list[str]:
    """Non-finite numbers and NUL characters in a config's (or a part's) own fields."""
    out = []
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, float) and not math.isfinite(v):
            out.append(f"{f.name} must be a finite number, not {v}")
        if isinstance(v, str) and "\x00" in v:
            out.append(f"{f.name} must not contain NUL characters")
    return out


@dataclass(init=False)
class TrainConfig(_Composed):
    """One training run: the settings every method shares, the method's own (``method_settings``: PamaSettings, "
    "MorlhfSettings or MgdaSettings, chosen by ``method``) and the conditioning settings (docs/config.md)."""
    name: str = _help("Run name shown in the app (default: method + preference).", default="")
    model: str = _help("Model spec: smollm2-135m (embedded), tiny-random (tests), a HF model id or a local folder.",
                       default="smollm2-135m")
    objectives: list[str] = _help("Objectives, comma-separated (see `python -m pama objectives`).",
                                  default_factory=lambda: list(DEFAULT_OBJECTIVES))
    preference: list[float] = _help("Preference over the objectives: one weight each, comma-separated, finite and "
                                    "non-negative (weights not summing to 1 are normalised with a warning). Empty = "
                                    "uniform; a sweep leaves it empty (its grid sets each run's).",
                                    default_factory=list)
    method: str = _help("pama (closed-form combination), morlhf (linear scalarisation), mgda (min-norm gradients) "
                        "or trl-grpo (TRL's GRPOTrainer with reward_weights = the preference; docs/PAMA_SPEC.md).",
                        default="pama")
    preset: str = _help("A named set of settings filled in before the config file and the flags (which win): "
                        f"{', '.join(PRESETS)} (docs/PAMA_SPEC.md). "
                        "Empty = none.", default="")
    method_settings: PamaSettings | MorlhfSettings | MgdaSettings | TrlGrpoSettings | None = _help(
        "The method's own settings, made from `method` and the flat keys (anchor, granularity).", default=None)
    conditioning_settings: ConditioningSettings = _help("Whether and how one adapter learns the whole front.",
                                                        default_factory=ConditioningSettings)
    steps: int = _help("PPO steps (one rollout batch each).", default=50)
    batch_size: int = _help("Responses per rollout batch (batch_size / samples_per_prompt prompts). Decoding on a "
                            "CPU is memory-bound, so 16 costs far less than twice 8: docs/learnability.md.",
                            default=16)
    ppo_epochs: int = _help("Optimisation passes over each rollout batch.", default=1)
    mini_batches: int = _help("Mini-batches per PPO epoch.", default=1)
    max_new_tokens: int = _help("Tokens generated per response.", default=64)
    temperature: float = _help("Sampling temperature for rollouts.", default=1.0)
    top_p: float = _help("Nucleus sampling for rollouts: training takes 1 only (π_old and the KL are computed on the "
                         "full distribution at `temperature`, not the nucleus); lower `temperature` instead.",
                         default=1.0)
    learning_rate: float = _help("Adam learning rate for the LoRA adapter and value heads.", default=1e-3)
    lr_schedule: str = _help(
        "The learning rate over the run's `steps` (TRL's lr_scheduler_type, no warm-up): constant, linear (falling to "
        "rate/steps at the last step) or cosine (toward 0). Twice the steps is then a slower anneal, not more steps at "
        "full rate; measured on a conditioned front it stops the KL's late climb but not the meeting of the ends "
        "(docs/learnability.md section 30).", default="constant")
    lora_r: int = _help("LoRA rank. An svd-conditioned run adds n gated preference directions; there lora_r is the "
                        "rank every preference shares, and 0 leaves only the gated ones.", default=8)
    lora_alpha: int = _help("LoRA alpha.", default=16)
    lora_dropout: float = _help("LoRA dropout, saved in the adapter's config. The RL forwards run with dropout off "
                                "(as TRL's), so it does not act during this training.", default=0.0)
    target_modules: list[str] = _help("Modules that get LoRA adapters; all-linear = every linear layer but the "
                                      "output head (PEFT's shorthand, any architecture).",
                                      default_factory=lambda: ["all-linear"])
    kl_coef: float = _help("Initial KL penalty β (0 disables the KL shaping).", default=0.1)
    target_kl: float = _help("Target KL (nats per response) of the adaptive β controller; 0 keeps β fixed. Under "
                             "Noon PPO (PAMA's default) the penalty cannot pull the KL back, so β can ratchet up "
                             "until it outweighs the objectives and a front's ends meet: for long runs prefer 0 "
                             "(docs/learnability.md section 24).", default=4.0)
    kl_shaping: str = _help(
        "[ours] How the KL penalty enters each objective's rewards: token (−β·KL on every token, the paper's: an "
        "answer's penalty grows with its length, so it also rewards brevity) or answer-mean (−β × the answer's mean "
        "per-token KL × the batch's mean length, on its last token: the same penalty on average, none for being "
        "short) or loss (no KL in the rewards; β × the mean per-token KL estimate k3 added to the policy loss, as "
        "TRL's GRPO does: under Noon PPO, which drops negative advantages, only this pulls the policy back toward "
        "the base; docs/learnability.md section 24).", default="token")
    kl_horizon: int = _help("Horizon of the adaptive KL controller, in samples: β moves by at most "
                            "20%·batch_size/horizon per step (TRL's 10000 barely moves β at batch 16).", default=100)
    gamma: float = _help("GAE discount γ.", default=1.0)
    lam: float = _help("GAE λ.", default=0.95)
    cliprange: float = _help("PPO ratio clip ε.", default=0.2)
    cliprange_value: float = _help("Value clip.", default=0.2)
    vf_coef: float = _help("Value loss coefficient, per value head (the loss is vf_coef × the sum of the heads' "
                           "clipped losses).", default=0.1)
    whiten_advantages: bool = _help("Whiten each objective's advantages over the batch's response tokens.",
                                    default=True)
    scale_rewards: str = _help(
        "[ours] none, or batch: divide each objective's (prompt-centred) rewards by their std over the batch before "
        "the KL and GAE, as TRL's GRPO scale_rewards='batch'. Whitening then compares objectives, not penalties: "
        "without it an objective with a small spread (relevance, sd 0.15, against sentiment's 0.52) is mostly the "
        "KL penalty once whitened. Measured once on the conditioned demo's recipe: it did not make the preference "
        "steer (docs/learnability.md section 25).", default="none")
    length_controlled_rewards: bool = _help(
        "[ours] Remove each objective's linear trend on log answer length from its rewards within every batch "
        "(within prompt groups when samples_per_prompt > 1) before the end-of-answer penalty, the KL and GAE, so "
        "no preference direction earns by writing longer or shorter answers; objectives that are length "
        "(conciseness, length) are left as they are (docs/learnability.md section 32).", default=False)
    noon: str = _help("Drop negative advantages (Noon PPO): auto = the paper's choice per method (on for pama, off "
                      "for its plain-PPO baselines morlhf and mgda), true or false.", default="auto")
    samples_per_prompt: int = _help("Responses sampled per prompt in a batch (k). With k > 1 each objective's "
                                    "sequence reward is centred on its prompt's mean before GAE (a per-prompt "
                                    "baseline, as in RLOO/GRPO), so prompt difficulty is not mistaken for response "
                                    "quality. batch_size must be a multiple of k.", default=4)
    max_grad_norm: float = _help("Gradient clipping (0 = off).", default=1.0)
    missing_eos_penalty: float = _help(
        "Subtracted from every objective's reward (in units of its bound range) for a response that hits "
        "max_new_tokens without EOS (TRL's missing_eos_penalty). Once no sample ends, no reward can favour "
        "ending; this keeps answers finished. 0 = off.", default=0.5)
    eos_weight: float = _help(
        "[ours] Weight of a separate ends-on-EOS term in the policy loss: the clipped surrogate of the advantage of "
        "having ended (ended − its prompt group's mean, over the batch's std), added to the method's loss outside "
        "the preference. Unlike missing_eos_penalty it does not enter (and is not rescaled with) each objective's "
        "reward. 0 = off; not for method trl-grpo.", default=0.0)
    eos_credit: str = _help(
        "[ours] Which tokens eos_weight's term credits: answer (every token of an answer, so what short answers say "
        "is reinforced too) or eos (the EOS token of the answers that ended: only the decision to stop).",
        default="answer")
    eos_min_tokens: int = _help(
        "[ours] For eos_weight's term, an answer that ends on EOS with fewer response tokens than this counts as not "
        "finished (with eos_credit: eos its early EOS is discouraged instead of credited), so the term rewards "
        "finishing, not stopping after one sentence. 0 = every end counts.", default=0)
    prompts: str = _help("Training prompts: builtin:train, a .jsonl/.csv/.txt file, or hf:<dataset>[:split[:col]].",
                         default="builtin:train")
    seed: int = _help("Random seed (prompt order, sampling, initialisation).", default=0)
    save_every: int = _help("Save a checkpoint every K steps (and at the end).", default=10)
    threads: int = _help("torch CPU threads (0 = torch's default).", default=0)
    device: str = _help("auto, cpu or cuda.", default="auto")
    dtype: str = _help("[ours] precision of the frozen base weights: float32, or bfloat16 (about half the memory "
                       "traffic; the LoRA adapter, value heads and optimiser stay float32).", default="float32")
    report_to: list[str] = _help("Integrations that receive the run's metrics too (TRL's option): tensorboard "
                                 "(event files under $PAMA_HOME/tensorboard/<run>), mlflow (MLFLOW_TRACKING_URI, "
                                 "default sqlite:///$PAMA_HOME/mlflow.db), none. Empty = none.",
                                 default_factory=list)
    live_eval_every: int = _help("[ours] Evaluate the policy every K steps on a small fixed held-out set (a "
                                 "conditioned run at both ends and the middle of the simplex, a plain run at its "
                                 "own point, the base model once), stored as live/... metrics that the Runs page "
                                 "draws as the front forming; 0 = off. At 10 it costs about 4% of the training "
                                 "time (docs/performance.md); a run of fewer than K steps is not evaluated.",
                                 default=10)
    live_eval_prompts: int = _help("[ours] Held-out prompts (the first N of builtin:heldout) of the live "
                                   "evaluation.", default=16)
    live_eval_max_new_tokens: int = _help("[ours] Tokens generated per live-evaluation response.", default=32)

    _PARTS = {"method_settings": tuple(METHOD_SETTINGS.values()), "conditioning_settings": (ConditioningSettings,)}

    def __init__(self, **values: Any) -> None:
        """Flat names (``anchor=0.3``, ``conditioned=True``) or the parts themselves (``dataclasses.replace`` passes
        them); a setting of a method other than ``method`` is refused (ConfigError naming it)."""
        cls = type(self)
        for f in dataclasses.fields(cls):
            if f.name not in cls._PARTS:
                object.__setattr__(self, f.name, values.pop(f.name) if f.name in values else _default(f))
        # configs stored before noon became per method hold true/false (YAML and from_dict give bools or their text)
        if isinstance(self.noon, bool) or str(self.noon).lower() in _NOON_WORDS:
            object.__setattr__(self, "noon", _NOON_WORDS.get(str(self.noon).lower(), self.noon))
        object.__setattr__(self, "method_settings", self._method_part(values))
        cond = {k: values.pop(k) for k in list(values) if k in _field_names(ConditioningSettings)}
        base = values.pop("conditioning_settings", None) or ConditioningSettings()
        object.__setattr__(self, "conditioning_settings", dataclasses.replace(base, **cond))
        if values:
            raise TypeError(f"{cls.__name__} got unexpected keyword argument(s) {', '.join(sorted(values))}")
        # the preference is made here, once (pama.preference: text / list / YAML → Preference, normalised with a
        # warning when it does not sum to 1); a bad one is reported by validate() with the other errors. Nothing
        # below checks or normalises it again.
        pref, error = _make_preference(self.preference, self.objectives)
        object.__setattr__(self, "_preference", pref)
        object.__setattr__(self, "_preference_error", error)
        if pref is not None or self.preference is None:  # YAML `preference:` (null) = uniform, as []
            object.__setattr__(self, "preference", pref.as_list() if pref is not None else [])

    def _method_part(self, values: dict):
        """The method's settings from ``values`` (flat names, or a part given whole); None for an unknown method
        (validate names it)."""
        owners = _method_fields()
        given = {k: values.pop(k) for k in list(values) if k in owners}
        part = values.pop("method_settings", None)
        settings_cls = METHOD_SETTINGS.get(self.method) if isinstance(self.method, str) else None
        if part is not None and type(part) is not settings_cls:
            # another method's part (dataclasses.replace(cfg, method=...)): what it changed counts as given
            default = type(part)()
            given = {**{f.name: getattr(part, f.name) for f in dataclasses.fields(part)
                        if getattr(part, f.name) != getattr(default, f.name)}, **given}
            part = None
        if settings_cls is None:
            return None
        wrong = [k for k in given if k not in _field_names(settings_cls)]
        if wrong:
            raise ConfigError(_not_for(wrong, self.method))
        return dataclasses.replace(part or settings_cls(), **given)

    def _no_such(self, name: str) -> str:
        owner = _method_fields().get(name)
        if owner is not None:
            return (f"{name} is a setting of method {owner} only; this config's method is {self.method} "
                    "(its own settings: cfg.method_settings)")
        return super()._no_such(name)

    def uses_noon(self) -> bool:
        """Whether negative advantages are dropped: the paper's PAMA uses Noon PPO, its MORLHF and MGDA plain PPO."""
        return self.method == "pama" if self.noon == "auto" else self.noon == "true"

    def normalised_preference(self) -> Preference:
        """The run's Preference, made when the config was (uniform when ``preference`` is empty)."""
        if self._preference_error:
            raise ConfigError(self._preference_error)
        return self._preference or Preference.uniform(len(self.objectives))

    def validate(self, *, check_objectives: bool = True, allow_python: bool = True) -> "TrainConfig":
        """Check every field, concern by concern; returns self, unchanged (the preference was made with the config).
        Raises ConfigError listing every error."""
        parts = [p for p in (self.method_settings, self.conditioning_settings) if p is not None]
        # the preference was made (or refused) by pama.preference when the config was
        errors = _type_errors(self, skip=("preference",)) + [e for p in parts for e in _type_errors(p)]
        if errors:  # the range checks below assume the right types
            raise ConfigError("Invalid training configuration:\n  - " + "\n  - ".join(errors))
        errors = _value_errors(self) + [e for p in parts for e in _value_errors(p)]
        errors += self._what_errors()
        if self.method_settings is not None:
            errors += self.method_settings.errors()
        errors += self.conditioning_settings.errors(self.method, self.objectives)
        errors += self._ppo_errors() + self._reporting_errors() + self._trl_errors()
        if self._preference_error:
            errors.append(self._preference_error)
        if check_objectives and self.objectives:
            from . import objectives as objmod  # the one upward edge (pyproject's contract ignores it), kept lazy

            for name in self.objectives:
                try:
                    objmod.get(name, allow_python=allow_python)
                except ValueError as err:
                    errors.append(str(err))
        if errors:
            raise ConfigError("Invalid training configuration:\n  - " + "\n  - ".join(errors))
        return self

    def _what_errors(self) -> list[str]:
        """What is trained: name, model, objectives, method, modules, seed, precision, device."""
        errors = []
        for name, limit in (("name", 200), ("model", 500)):
            if len(getattr(self, name)) > limit:
                errors.append(f"{name} is longer than {limit} characters")
        if any(len(o) > 500 for o in self.objectives):
            errors.append("an objective spec is longer than 500 characters")
        if not self.target_modules:
            errors.append("target_modules must name at least one module (e.g. q_proj,v_proj)")
        if not 0 <= self.seed < 2**32:
            errors.append(f"seed must lie in [0, 2^32), not {self.seed}")
        if self.method not in METHODS:
            errors.append(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if not self.objectives:
            errors.append("at least one objective is needed (e.g. --objectives sentiment,conciseness)")
        if len(set(self.objectives)) != len(self.objectives):
            errors.append(f"objectives are repeated: {self.objectives}")
        if self.dtype not in ("float32", "bfloat16"):
            errors.append(f"dtype must be float32 or bfloat16, not {self.dtype!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            errors.append(f"device must be auto, cpu or cuda, not {self.device!r}")
        return errors

    def _preference_only_rank(self) -> bool:
        """Whether lora_r = 0 is allowed: for an svd-conditioned run, its adapter is then only the n gated preference
        directions (rank n), one per objective, with no direction shared by every preference (docs/conditioned.md)."""
        cond = self.conditioning_settings
        return cond.conditioned and cond.conditioning == "svd"

    def _ppo_errors(self) -> list[str]:
        """The PPO loop every method shares: budget, sampling, optimiser, LoRA, KL, GAE, clipping, Noon."""
        errors = []
        if self.noon not in ("auto", "true", "false"):
            errors.append(f"noon must be auto, true or false, not {self.noon!r}")
        for name in ("steps", "batch_size", "ppo_epochs", "mini_batches", "max_new_tokens", "save_every"):
            if getattr(self, name) <= 0:
                errors.append(f"{name} must be a positive integer, not {getattr(self, name)}")
        if self.lora_r < 0 or (self.lora_r == 0 and not self._preference_only_rank()):
            errors.append(f"lora_r must be a positive integer, not {self.lora_r} (0 only for an svd-conditioned run)")
        if not isinstance(self.samples_per_prompt, int) or self.samples_per_prompt <= 0:
            errors.append(f"samples_per_prompt must be a positive integer, not {self.samples_per_prompt}")
        elif self.batch_size > 0 and self.batch_size % self.samples_per_prompt:
            errors.append(f"batch_size ({self.batch_size}) must be a multiple of samples_per_prompt "
                          f"({self.samples_per_prompt})")
        if self.batch_size > 0 and self.mini_batches > 0 and self.batch_size % self.mini_batches:
            errors.append(f"batch_size ({self.batch_size}) must be divisible by mini_batches ({self.mini_batches})")
        for name, lo, hi in (("learning_rate", 0, 1), ("temperature", 0, 10), ("top_p", 0, 1), ("lam", 0, 1),
                             ("gamma", 0, 1), ("cliprange", 0, 10), ("lora_dropout", 0, 1)):
            v = getattr(self, name)
            if not (lo < v <= hi) if name in ("learning_rate", "temperature", "top_p", "cliprange") else not (lo <= v <= hi):
                errors.append(f"{name} = {v} is out of range ({lo}, {hi}]")
        if 0 < self.top_p < 1:
            errors.append(f"top_p = {self.top_p}: training samples with top_p = 1 only, since the PPO ratio and the KL "
                          "use the full distribution at `temperature`, not the nucleus the rollout drew from; set "
                          "top_p: 1, and lower `temperature` for more focused rollouts")
        for name in ("kl_coef", "target_kl", "vf_coef", "max_grad_norm", "cliprange_value", "threads",
                     "missing_eos_penalty", "eos_weight"):
            if getattr(self, name) < 0:
                errors.append(f"{name} must be ≥ 0, not {getattr(self, name)}")
        if self.scale_rewards not in SCALE_REWARDS:
            errors.append(f"scale_rewards must be {' or '.join(map(repr, SCALE_REWARDS))}, not {self.scale_rewards!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            errors.append(f"lr_schedule must be {' or '.join(map(repr, LR_SCHEDULES))}, not {self.lr_schedule!r}")
        if self.kl_shaping not in KL_SHAPINGS:
            errors.append(f"kl_shaping must be {' or '.join(map(repr, KL_SHAPINGS))}, not {self.kl_shaping!r}")
        if self.eos_credit not in EOS_CREDITS:
            errors.append(f"eos_credit must be {' or '.join(map(repr, EOS_CREDITS))}, not {self.eos_credit!r}")
        if not 0 <= self.eos_min_tokens < self.max_new_tokens:
            errors.append(f"eos_min_tokens = {self.eos_min_tokens} must be ≥ 0 and below max_new_tokens "
                          f"({self.max_new_tokens}), or no answer could count as finished")
        return errors

    def _trl_errors(self) -> list[str]:
        """What TRL's GRPOTrainer cannot do (method trl-grpo; docs/PAMA_SPEC.md) and an unknown preset."""
        errors = []
        if self.preset and self.preset not in PRESETS:
            errors.append(f"preset must be one of {', '.join(PRESETS)} (or empty), not {self.preset!r}")
        if self.method != "trl-grpo":
            return errors
        if isinstance(self.samples_per_prompt, int) and self.samples_per_prompt < 2:
            errors.append(f"method trl-grpo needs samples_per_prompt ≥ 2, not {self.samples_per_prompt}: GRPO's "
                          "advantage is a response's reward minus its prompt group's mean, which one sample per "
                          "prompt makes 0 (TRL's num_generations); use --samples-per-prompt 4")
        if self.eos_weight:
            errors.append(f"eos_weight ({self.eos_weight}) is not available with method trl-grpo (TRL's loss has no "
                          "extra term); use missing_eos_penalty, or eos_weight: 0")
        if self.kl_shaping != "token":
            errors.append(f"kl_shaping: {self.kl_shaping} is not available with method trl-grpo (TRL's GRPO puts its "
                          "per-token KL in the loss, not in the rewards); use kl_shaping: token")
        if self.scale_rewards != "none":
            errors.append(f"scale_rewards: {self.scale_rewards} is not available with method trl-grpo (TRL's GRPO "
                          "scales its group rewards its own way); use scale_rewards: none")
        if self.noon == "true":
            errors.append("noon: true does not apply to method trl-grpo (TRL's GRPO loss has no Noon option); use "
                          "noon: auto or false")
        return errors

    def _reporting_errors(self) -> list[str]:
        """Where the metrics go besides the store, and the live evaluation."""
        errors = []
        bad = [r for r in self.report_to if r not in REPORT_TO]
        if bad:
            errors.append(f"report_to: unknown integration(s) {bad}; choose from {', '.join(REPORT_TO)}")
        for name in ("live_eval_prompts", "live_eval_max_new_tokens"):
            if getattr(self, name) <= 0:
                errors.append(f"{name} must be a positive integer, not {getattr(self, name)}")
        if self.live_eval_every < 0:
            errors.append(f"live_eval_every must be ≥ 0 (0 = off), not {self.live_eval_every}")
        return errors



@dataclass(init=False)
class SweepConfig(_Composed):
    """A sweep composes a run template (each grid point trains it at the point's preference), the grid and the
    evaluation settings. Made and read with flat names as a run config is (``SweepConfig(steps=2, points=3)``,
    ``cfg.steps``, ``cfg.points``); ``to_dict`` writes the three flat."""
    run: TrainConfig = _help("The run every grid point trains (its preference left empty: the grid sets it).",
                             default_factory=TrainConfig)
    grid: GridSettings = _help("The grid of preferences.", default_factory=GridSettings)
    evaluation: EvalSettings = _help("How each point is evaluated.", default_factory=EvalSettings)

    _PARTS = {"run": (TrainConfig,), "grid": (GridSettings,), "evaluation": (EvalSettings,)}

    def __init__(self, **values: Any) -> None:
        for part, part_cls in (("grid", GridSettings), ("evaluation", EvalSettings)):
            given = {k: values.pop(k) for k in list(values) if k in _field_names(part_cls)}
            object.__setattr__(self, part, dataclasses.replace(values.pop(part, None) or part_cls(), **given))
        run = values.pop("run", None)
        run = dataclasses.replace(run, **values) if run is not None else TrainConfig(**values)
        object.__setattr__(self, "run", run)

    def validate(self, *, check_objectives: bool = True, allow_python: bool = True) -> "SweepConfig":
        self.run.validate(check_objectives=check_objectives, allow_python=allow_python)
        errors = _type_errors(self.grid) + _type_errors(self.evaluation)
        if not errors:  # the range checks assume the right types
            errors = (_value_errors(self.grid) + _value_errors(self.evaluation) + self.grid.errors()
                      + self.evaluation.errors())
        if self.run.preference:
            errors.append("a sweep sets the preference of each run itself (its grid); drop preference")
        if errors:
            raise ConfigError("Invalid sweep configuration:\n  - " + "\n  - ".join(errors))
        return self


# ---------------------------------------------------------------------------------------------------------------------
# dataclass <-> argparse / YAML

def _type_ok(tp, value) -> bool:
    origin = typing.get_origin(tp)
    if origin in (list, typing.List):
        (inner,) = typing.get_args(tp)
        return isinstance(value, list) and all(_type_ok(inner, x) for x in value)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return True


def _type_errors(cfg, skip: tuple[str, ...] = ()) -> list[str]:
    """Fields of the wrong type (a config built in Python without from_dict), named with what is expected."""
    out = []
    for f in dataclasses.fields(cfg):
        if f.name in skip or f.name in getattr(type(cfg), "_PARTS", {}):  # a part is checked on its own
            continue
        tp, v = _field_type(type(cfg), f), getattr(cfg, f.name)
        if not _type_ok(tp, v):
            want = getattr(tp, "__name__", str(tp)) if typing.get_origin(tp) is None else str(tp)
            out.append(f"{f.name} must be of type {want}, not {type(v).__name__} ({v!r:.60})")
    return out


def _field_type(cls, f: dataclasses.Field):
    hints = typing.get_type_hints(cls)
    return hints[f.name]


def _parse_value(tp, raw: Any, name: str):
    origin = typing.get_origin(tp)
    try:
        if origin in (list, typing.List):
            (inner,) = typing.get_args(tp)
            if isinstance(raw, str):
                items = [x.strip() for x in raw.split(",") if x.strip()]
            elif isinstance(raw, (list, tuple)):
                items = list(raw)
            else:
                raise TypeError(f"expected a list or a comma-separated string, got {type(raw).__name__}")
            return [_parse_value(inner, x, name) for x in items]
        if tp is bool:
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on"):
                return True
            if str(raw).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"expected true or false, got {raw!r}")
        if tp is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise TypeError(f"expected an integer, got {raw!r}")
            return int(raw)
        if tp is float:
            if isinstance(raw, bool):
                raise TypeError(f"expected a number, got {raw!r}")
            return float(raw)
        if tp is str:
            if not isinstance(raw, (str, int, float)):
                raise TypeError(f"expected text, got {type(raw).__name__}")
            return str(raw)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{name}: {err}") from None
    return raw


def from_dict(cls, data: dict, *, source: str = "config", stored: bool = False):
    """Flat ``field: value`` (YAML, flags, the Train form, the store) → a config of ``cls``. A setting of a method
    other than the config's is refused, except with ``stored=True`` (a run or sweep read back from the store), which
    drops it: configs written before the split held every method's settings (docs/config.md)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a mapping of field: value, got {type(data).__name__}")
    fields = {name: tp for name, tp, _, _ in _flat_fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {', '.join(unknown)}; known fields: {', '.join(fields)}")
    if stored:
        data = {k: v for k, v in data.items() if k not in other_methods_settings(data.get("method"))}
    data = with_preset(data, fields)
    # the preference goes in as given (text, list, YAML value): pama.preference parses it when the config is made
    kwargs = {k: v if k == "preference" else _parse_value(fields[k], v, f"{source}: {k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def preset_values(name: str, fields=None, method: str | None = None) -> dict:
    """The settings preset ``name`` fills in: only ``fields`` (a config's flat names; a run has no eval_* fields)
    and not another method's own settings when ``method`` overrides the preset's (``--method trl-grpo`` drops the
    preset's anchor). An unknown name: ConfigError listing the presets."""
    if name not in PRESETS:
        raise ConfigError(f"preset must be one of {', '.join(PRESETS)} (or empty), not {name!r}")
    values = copy.deepcopy(PRESETS[name])
    method = method or values.get("method")
    values.update(values.pop("for_method", {}).get(method, {}))
    drop = other_methods_settings(method) if method in METHODS else frozenset()
    return {k: v for k, v in values.items() if (fields is None or k in fields) and k not in drop}


def with_preset(data: dict, fields=None) -> dict:
    """``data`` with its preset's settings filled in where ``data`` does not set them (what is given wins)."""
    name = data.get("preset")
    if not name or not isinstance(name, str):
        return data
    return {**preset_values(name, fields, data.get("method")), **data}


def describe_preset(cfg) -> str:
    """The preset's settings as this config holds them, one per line (a value changed by the config file or a flag
    is marked), for the CLI to print; '' without a preset."""
    if not getattr(cfg, "preset", ""):
        return ""
    flat = cfg.to_dict()
    lines = [f"preset {cfg.preset} (docs/PAMA_SPEC.md):"]
    for k, v in preset_values(cfg.preset, set(flat), flat.get("method")).items():
        mark = "" if flat[k] == v else f"   (preset: {v}; set by the config file or a flag)"
        lines.append(f"  {k}: {flat[k]}{mark}")
    return "\n".join(lines)


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not a text file") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror or err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of field: value, not {type(data).__name__}")
    return data


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """One --flag per field, all defaulting to None so that only explicit flags override the YAML file."""
    for name, tp, f, owner in _flat_fields(cls):
        flag = "--" + name.replace("_", "-")
        meta = "A,B,..." if typing.get_origin(tp) in (list, typing.List) else tp.__name__.upper()
        default = _default(f)
        only = f" Method {_METHOD_OF[owner]} only." if owner in _METHOD_OF else ""
        # a bare boolean flag means true (`--conditioned`); `--conditioned false` still works
        optional = dict(nargs="?", const="true") if tp is bool else {}
        # argparse %-formats help texts: a literal % (e.g. kl_horizon's "20%·batch_size") must be doubled
        parser.add_argument(flag, dest=name, default=None, metavar=meta, **optional,
                            help=f"{f.metadata.get('help', '')}{only} (default: {default})".replace("%", "%%"))


def build(cls, args: argparse.Namespace | dict, config_file: str | None = None):
    """defaults < YAML < flags."""
    data = load_yaml(config_file) if config_file else {}
    if config_file:
        with warnings.catch_warnings():  # the merged config below warns about the preference, once
            warnings.simplefilter("ignore", PreferenceWarning)
            from_dict(cls, data, source=str(config_file))  # type-check the file on its own for a precise message
    flags = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    names = {name for name, *_ in _flat_fields(cls)}
    data.update({k: v for k, v in flags.items() if k in names and v is not None})
    return from_dict(cls, data, source="flags" if not config_file else f"{config_file} + flags")


def to_yaml(cfg) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
