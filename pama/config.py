"""Run configurations: dataclasses with help text, loadable from YAML and overridable by CLI flags (TRL's style).

Precedence: dataclass defaults < ``--config FILE`` < explicit flags. ``validate()`` says what is wrong and never
touches the store, so bad input is refused before anything is written.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .preference import Preference, PreferenceError, PreferenceWarning

METHODS = ("pama", "morlhf", "mgda")
# the methods that train a preference-conditioned adapter (docs/conditioned.md): a per-sample preference enters PAMA's
# anchored combination and MORLHF's scalarisation; MGDA's per-objective gradients have no place for it
CONDITIONED_METHODS = ("pama", "morlhf")
CONDITIONING_FORMS = ("svd", "prefix")
PREFERENCE_SAMPLING = ("dirichlet", "grid")
# the pair whose two ends separate fastest per CPU minute on the embedded model: docs/learnability.md
DEFAULT_OBJECTIVES = ["informativeness", "conciseness"]
# the Train form's preference: conciseness first, the end that moves out of the base model's interval in minutes
DEFAULT_PREFERENCE = [0.25, 0.75]


# fields a config's preference is made from: fixed once the config is made (TrainConfig.__setattr__)
_FIXED_FIELDS = ("preference", "objectives")

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


@dataclass
class TrainConfig:
    name: str = _help("Run name shown in the app (default: method + preference).", default="")
    model: str = _help("Model spec: smollm2-135m (embedded), tiny-random (tests), a HF model id or a local folder.",
                       default="smollm2-135m")
    objectives: list[str] = _help("Objectives, comma-separated (see `python -m pama objectives`).",
                                  default_factory=lambda: list(DEFAULT_OBJECTIVES))
    preference: list[float] = _help("Preference over the objectives: one weight each, comma-separated, finite and "
                                    "non-negative (weights not summing to 1 are normalised with a warning). Empty = "
                                    "uniform; a sweep leaves it empty (its grid sets each run's).",
                                    default_factory=list)
    method: str = _help("pama (closed-form combination), morlhf (linear scalarisation) or mgda (min-norm gradients).",
                        default="pama")
    anchor: float = _help("PAMA anchor strength λ in [0, 1]: 1 = the paper's PAMA (ignores the preference), "
                          "0 = linear scalarisation with the preference.", default=0.5)
    granularity: str = _help("PAMA combination per 'token' or from batch-mean advantages ('batch').", default="token")
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
                                    "(1 = uniform over the simplex; < 1 favours the ends).", default=1.0)
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
    lora_r: int = _help("LoRA rank.", default=8)
    lora_alpha: int = _help("LoRA alpha.", default=16)
    lora_dropout: float = _help("LoRA dropout, saved in the adapter's config. The RL forwards run with dropout off "
                                "(as TRL's), so it does not act during this training.", default=0.0)
    target_modules: list[str] = _help("Modules that get LoRA adapters; all-linear = every linear layer but the "
                                      "output head (PEFT's shorthand, any architecture).",
                                      default_factory=lambda: ["all-linear"])
    kl_coef: float = _help("Initial KL penalty β (0 disables the KL shaping).", default=0.1)
    target_kl: float = _help("Target KL (nats per response) of the adaptive β controller; 0 keeps β fixed.",
                             default=4.0)
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
    prompts: str = _help("Training prompts: builtin:train, a .jsonl/.csv/.txt file, or hf:<dataset>[:split[:col]].",
                         default="builtin:train")
    seed: int = _help("Random seed (prompt order, sampling, initialisation).", default=0)
    save_every: int = _help("Save a checkpoint every K steps (and at the end).", default=10)
    threads: int = _help("torch CPU threads (0 = torch's default).", default=0)
    device: str = _help("auto, cpu or cuda.", default="auto")
    dtype: str = _help("[ours] precision of the frozen base weights: float32, or bfloat16 (about half the memory "
                       "traffic; the LoRA adapter, value heads and optimiser stay float32).", default="float32")

    def __post_init__(self) -> None:
        # configs stored before noon became per method hold true/false (YAML and from_dict give bools or their text)
        if isinstance(self.noon, bool) or str(self.noon).lower() in _NOON_WORDS:
            self.noon = _NOON_WORDS.get(str(self.noon).lower(), self.noon)
        # the preference is made here, once (pama.preference: text / list / YAML → Preference, normalised with a
        # warning when it does not sum to 1); a bad one is reported by validate() with the other errors. Neither it
        # nor the objectives change afterwards (__setattr__), so nothing below checks or normalises it again.
        self._preference, self._preference_error = _make_preference(self.preference, self.objectives)
        if self._preference is not None or self.preference is None:  # YAML `preference:` (null) = uniform, as []
            self.preference = self._preference.as_list() if self._preference is not None else []
        self._made = True

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _FIXED_FIELDS and getattr(self, "_made", False):
            raise AttributeError(f"{type(self).__name__}.{name} is fixed once the config is made (the run's "
                                 f"Preference is made from it); make a new one: dataclasses.replace(cfg, {name}=...)")
        object.__setattr__(self, name, value)

    def uses_noon(self) -> bool:
        """Whether negative advantages are dropped: the paper's PAMA uses Noon PPO, its MORLHF and MGDA plain PPO."""
        return self.method == "pama" if self.noon == "auto" else self.noon == "true"

    def normalised_preference(self) -> Preference:
        """The run's Preference, made when the config was (uniform when ``preference`` is empty)."""
        if self._preference_error:
            raise ConfigError(self._preference_error)
        return self._preference or Preference.uniform(len(self.objectives))

    def validate(self, *, check_objectives: bool = True, allow_python: bool = True) -> "TrainConfig":
        """Check every field; returns self, unchanged (the preference was made with the config). Raises ConfigError."""
        errors = _type_errors(self, skip=("preference",))  # made (or refused) by pama.preference in __post_init__
        if errors:  # the range checks below assume the right types
            raise ConfigError("Invalid training configuration:\n  - " + "\n  - ".join(errors))
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                errors.append(f"{f.name} must be a finite number, not {v}")
            if isinstance(v, str) and "\x00" in v:
                errors.append(f"{f.name} must not contain NUL characters")
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
        if self.noon not in ("auto", "true", "false"):
            errors.append(f"noon must be auto, true or false, not {self.noon!r}")
        if self.granularity not in ("token", "batch"):
            errors.append(f"granularity must be 'token' or 'batch', not {self.granularity!r}")
        if self.conditioned and self.method in METHODS and self.method not in CONDITIONED_METHODS:
            errors.append(f"conditioned: true works with method {' or '.join(CONDITIONED_METHODS)}, not "
                          f"{self.method} (its per-objective gradients take no per-sample preference); use "
                          "--method pama, or drop --conditioned")
        if self.conditioned and len(self.objectives) < 2:
            errors.append("a conditioned adapter needs at least two objectives to trade off (e.g. --objectives "
                          "informativeness,conciseness)")
        if self.conditioning not in CONDITIONING_FORMS:
            errors.append(f"conditioning must be {' or '.join(CONDITIONING_FORMS)}, not {self.conditioning!r}")
        if self.preference_sampling not in PREFERENCE_SAMPLING:
            errors.append(f"preference_sampling must be {' or '.join(PREFERENCE_SAMPLING)}, not "
                          f"{self.preference_sampling!r}")
        if not self.preference_alpha > 0:
            errors.append(f"preference_alpha must be > 0 (1 = uniform over the simplex), not {self.preference_alpha}")
        if not (0.0 <= self.anchor <= 1.0) or math.isnan(self.anchor):
            errors.append(f"anchor must lie in [0, 1], not {self.anchor}")
        for name in ("steps", "batch_size", "ppo_epochs", "mini_batches", "max_new_tokens", "lora_r", "save_every"):
            if getattr(self, name) <= 0:
                errors.append(f"{name} must be a positive integer, not {getattr(self, name)}")
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
                     "missing_eos_penalty"):
            if getattr(self, name) < 0:
                errors.append(f"{name} must be ≥ 0, not {getattr(self, name)}")
        if self.dtype not in ("float32", "bfloat16"):
            errors.append(f"dtype must be float32 or bfloat16, not {self.dtype!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            errors.append(f"device must be auto, cpu or cuda, not {self.device!r}")
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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class SweepConfig(TrainConfig):
    points: int = _help("Preferences per edge of the simplex grid (2 objectives: K points; 3: the K-grid).",
                        default=5)
    eval_prompts: str = _help("Held-out prompts for evaluation.", default="builtin:heldout")
    eval_samples: int = _help("Held-out prompts evaluated per point.", default=128)
    eval_max_new_tokens: int = _help("Tokens generated per evaluation response (more than max_new_tokens leaves "
                                     "room to see whether answers end on their own).", default=96)
    eval_seed: int = _help("Seed of the evaluation sampling (the same for every point).", default=1234)
    eval_temperature: float = _help(
        "Sampling temperature of the evaluation. 0.7 reads fluently from a 135M model; but a policy that learned to "
        "stop by sampling EOS at the rollouts' temperature (1.0) stops less often at 0.7, so set it to "
        "`temperature` to evaluate exactly the policy that was trained (docs/learnability.md).", default=0.7)

    def validate(self, *, check_objectives: bool = True, allow_python: bool = True) -> "SweepConfig":
        super().validate(check_objectives=check_objectives, allow_python=allow_python)
        errors = [f"{name} must be a positive integer, not {getattr(self, name)}"
                  for name in ("points", "eval_samples", "eval_max_new_tokens") if getattr(self, name) <= 0]
        if not 0 <= self.eval_seed < 2**32:
            errors.append(f"eval_seed must lie in [0, 2^32), not {self.eval_seed}")
        if self.preference:
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
        if f.name in skip:
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


def from_dict(cls, data: dict, *, source: str = "config"):
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a mapping of field: value, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {', '.join(unknown)}; known fields: {', '.join(fields)}")
    # the preference goes in as given (text, list, YAML value): pama.preference parses it when the config is made
    kwargs = {k: v if k == "preference" else _parse_value(_field_type(cls, fields[k]), v, f"{source}: {k}")
              for k, v in data.items()}
    return cls(**kwargs)


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
    for f in dataclasses.fields(cls):
        tp = _field_type(cls, f)
        flag = "--" + f.name.replace("_", "-")
        meta = "A,B,..." if typing.get_origin(tp) in (list, typing.List) else tp.__name__.upper()
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        # a bare boolean flag means true (`--conditioned`); `--conditioned false` still works
        optional = dict(nargs="?", const="true") if tp is bool else {}
        # argparse %-formats help texts: a literal % (e.g. kl_horizon's "20%·batch_size") must be doubled
        parser.add_argument(flag, dest=f.name, default=None, metavar=meta, **optional,
                            help=f"{f.metadata.get('help', '')} (default: {default})".replace("%", "%%"))


def build(cls, args: argparse.Namespace | dict, config_file: str | None = None):
    """defaults < YAML < flags."""
    data = load_yaml(config_file) if config_file else {}
    if config_file:
        with warnings.catch_warnings():  # the merged config below warns about the preference, once
            warnings.simplefilter("ignore", PreferenceWarning)
            from_dict(cls, data, source=str(config_file))  # type-check the file on its own for a precise message
    flags = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    names = {f.name for f in dataclasses.fields(cls)}
    data.update({k: v for k, v in flags.items() if k in names and v is not None})
    return from_dict(cls, data, source="flags" if not config_file else f"{config_file} + flags")


def to_yaml(cfg) -> str:
    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)
