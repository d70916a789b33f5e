"""A run's row before it runs: its default name, the cheap checks that refuse it early (``preflight``) and its
creation (``create_run_record``), shared by the trainer, the ``train`` CLI and the app's jobs. Core: no peft or
accelerate here, so the app can create a run's row without importing the trainer."""
from __future__ import annotations

from . import models
from . import objectives as objmod
from .config import TrainConfig
from .methods import create as create_method
from .pareto import conditioned_grid, preference_grid
from .prompts import load_prompts
from .store import Store


def default_run_name(cfg: TrainConfig) -> str:
    pref = ",".join(f"{p:.2f}" for p in cfg.normalised_preference())
    what = f"conditioned ({cfg.conditioning})" if cfg.conditioned else f"[{pref}]"
    extra = create_method(cfg).run_name_suffix()
    return f"{cfg.method} {what}{extra} {'/'.join(cfg.objectives)}"


def sweep_shape(config: dict) -> tuple[int, int]:
    """(runs a sweep trains, points it evaluates besides the base) from its config dict: one run per grid preference,
    or ONE conditioned run evaluated along ``pareto.conditioned_grid``."""
    n, points = len(config.get("objectives") or []), int(config.get("points", 0))
    if config.get("conditioned"):
        return 1, len(conditioned_grid(n, points))
    size = len(preference_grid(n, points))
    return size, size


def default_sweep_name(config: dict) -> str:
    """'pama sweep ×5 a/b', or 'pama conditioned ×11 a/b' for a conditioned sweep."""
    kind = "conditioned" if config.get("conditioned") else "sweep"
    return f"{config['method']} {kind} ×{sweep_shape(config)[1]} {'/'.join(config['objectives'])}"


def create_run_record(store: Store, cfg: TrainConfig, *, objectives=None, name: str | None = None,
                      sweep_id: str | None = None) -> str:
    """The run's row (status 'queued'), made by whoever starts the run: the CLI and app jobs before the slow model
    load, so that its id is known at once; the Trainer itself when given none."""
    objs = objectives if objectives is not None else [objmod.get(o) for o in cfg.objectives]
    return store.create_run(
        name=name or cfg.name or default_run_name(cfg), method=cfg.method, model=cfg.model, config=cfg.to_dict(),
        total_steps=cfg.steps, sweep_id=sweep_id,
        objectives=[dict(name=o.name, direction=o.direction, lower=o.lower, upper=o.upper) for o in objs])


def preflight(cfg: TrainConfig) -> None:
    """Cheap checks of what validate() cannot see: the prompt source loads, the model spec names a model."""
    load_prompts(cfg.prompts)
    spec = (cfg.model or "").strip()
    if spec not in (models.DEFAULT_MODEL, models.TINY_MODEL) and not spec.startswith("random:"):
        models.load_tokenizer(spec)  # what models.load() does first; raises ModelNotFoundError
