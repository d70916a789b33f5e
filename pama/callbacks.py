"""Trainer callbacks, named as transformers' ``TrainerCallback`` (and TRL's trainers) name them.

The trainer trains and reports; what happens to a report is a callback's business. ``StoreCallback`` is the run
store's writer (the run row, metrics, heartbeats, status, checkpoint path, cancellation); ``TensorBoardCallback``
and ``MLflowCallback`` are the integrations that ``report_to: [tensorboard, mlflow]`` adds (TRL's option name and
values), so a run's curves appear in the tools a user already has. A trainer given no callbacks touches no store.
Callbacks run on the main process only. docs/ARCHITECTURE.md ("Callbacks") describes the protocol.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import re
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from . import paths
from .config import REPORT_TO
from .heartbeat import heartbeat_interval_s
from .runs import create_run_record


@dataclass
class TrainerControl:
    """What the callbacks ask of the loop (transformers' ``TrainerControl``): ``should_cancel`` stops the run as
    cancelled before the next step."""

    should_cancel: bool = False


class TrainerCallback:
    """Every hook is optional. ``trainer`` is the ``pama.trainer.Trainer`` (``cfg``, ``run_id``, ``step``,
    ``objectives``, ``model``, ``tokenizer``, ``accelerator``); ``metrics`` maps names to floats."""

    def create_run(self, trainer, *, name: str | None, sweep_id: str | None) -> str | None:
        """The new run's id when this callback keeps runs (the store makes the row), else None."""
        return None

    def on_train_begin(self, trainer) -> None: ...

    def on_step_begin(self, trainer, control: TrainerControl) -> None: ...

    def on_log(self, trainer, step: int, metrics: dict[str, float]) -> None: ...

    def on_step_end(self, trainer, step: int, metrics: dict[str, float]) -> None: ...

    def on_save(self, trainer, checkpoint: Path) -> None: ...

    def on_train_end(self, trainer, status: str, error: str | None = None) -> None:
        """``status``: finished, cancelled or failed (with ``error``)."""


class CallbackHandler:
    """The trainer's list of callbacks, called in order."""

    def __init__(self, callbacks: Iterable[TrainerCallback] = ()):
        self.callbacks = list(callbacks)

    def call(self, event: str, *args, **kwargs) -> None:
        for cb in self.callbacks:
            getattr(cb, event)(*args, **kwargs)

    def end(self, trainer, status: str, error: str | None = None) -> None:
        """``on_train_end`` on every callback even when one fails (a reporting tool must not hide the run's own
        outcome, nor keep the store's status from being written): failures become warnings."""
        for cb in self.callbacks:
            try:
                cb.on_train_end(trainer, status, error)
            except Exception as err:  # noqa: BLE001 - any integration's error
                warnings.warn(f"{type(cb).__name__}.on_train_end failed: {type(err).__name__}: {err}", stacklevel=2)

    def create_run(self, trainer, *, name: str | None, sweep_id: str | None) -> str:
        for cb in self.callbacks:
            run_id = cb.create_run(trainer, name=name, sweep_id=sweep_id)
            if run_id:
                return run_id
        return f"r{uuid.uuid4().hex[:10]}"  # the store's id form, for a run no store keeps

    def find(self, kind: type) -> Any | None:
        return next((cb for cb in self.callbacks if isinstance(cb, kind)), None)


class StepFunctionCallback(TrainerCallback):
    """``on_step(step, metrics)`` after every step: the trainer's older ``on_step=`` argument as a callback."""

    def __init__(self, fn: Callable[[int, dict], None]):
        self.fn = fn

    def on_step_end(self, trainer, step, metrics):
        self.fn(step, metrics)


# -- the store -------------------------------------------------------------------------------------------------------
def heartbeat_loop(store, run_id: str, stop: threading.Event, every_s: float | None = None) -> None:
    """A heartbeat independent of step length, so a killed process is spotted within the grace period.

    ``every_s`` defaults to $PAMA_HEARTBEAT_S (10 s); the grace before a silent run is marked failed is
    $PAMA_HEARTBEAT_GRACE_S (120 s), see :func:`pama.heartbeat.heartbeat_grace_s`."""
    every_s = heartbeat_interval_s() if every_s is None else every_s
    while store is not None and not stop.wait(every_s):
        with contextlib.suppress(Exception):
            store.heartbeat(run_id)


class StoreCallback(TrainerCallback):
    """The run store's writer: creates the run row (unless the starter made it), marks it running / finished /
    cancelled / failed, writes every logged metric, beats while training, records the latest checkpoint's adapter,
    and turns a 'cancelled' status set from outside (the app, ``pama runs cancel``) into a stop."""

    def __init__(self, store):
        self.store = store
        self._stop: threading.Event | None = None

    def create_run(self, trainer, *, name, sweep_id):
        return create_run_record(self.store, trainer.cfg, objectives=trainer.objectives, name=name,
                                 sweep_id=sweep_id)

    def on_train_begin(self, trainer):
        self.store.update_run(trainer.run_id, total_steps=trainer.cfg.steps)
        self.store.set_status(trainer.run_id, "running")
        self._stop = threading.Event()
        threading.Thread(target=heartbeat_loop, args=(self.store, trainer.run_id, self._stop), daemon=True).start()

    def on_step_begin(self, trainer, control):
        run = self.store.get_run(trainer.run_id)
        if run and run["status"] == "cancelled":
            control.should_cancel = True

    def on_log(self, trainer, step, metrics):
        self.store.log_metrics(trainer.run_id, step, metrics)

    def on_save(self, trainer, checkpoint):
        self.store.update_run(trainer.run_id, adapter_path=str(Path(checkpoint) / "adapter"))

    def on_train_end(self, trainer, status, error=None):
        if self._stop is not None:
            self._stop.set()
        if status == "cancelled":
            self.store.set_status(trainer.run_id, "cancelled", error=error or "cancelled by the user")
        else:
            self.store.set_status(trainer.run_id, status, error=error)


# -- the integrations of report_to -----------------------------------------------------------------------------------
def _require(module: str, package: str, what: str):
    """Import an optional integration's module, or say which pip package brings it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"report_to: {what} needs the {package!r} package: pip install {package} "
                          f"(requirements.txt pins the version this project is tested with)") from None


def _flat_params(cfg) -> dict[str, str]:
    """The run's config as flat text parameters (lists comma-joined), as tracking tools show parameters."""
    out = {}
    for k, v in cfg.to_dict().items():
        if isinstance(v, (list, tuple)):
            v = ",".join(str(x) for x in v)
        out[k] = str(v)[:500]
    return out


def tensorboard_dir(run_id: str) -> Path:
    """``$PAMA_TENSORBOARD_DIR/<run>`` (default ``$PAMA_HOME/tensorboard/<run>``): one folder for all runs, so
    ``tensorboard --logdir $PAMA_HOME/tensorboard`` shows them side by side."""
    root = os.environ.get("PAMA_TENSORBOARD_DIR") or str(paths.home() / "tensorboard")
    return Path(root) / run_id


class TensorBoardCallback(TrainerCallback):
    """Every logged metric as a TensorBoard scalar at its step (tensorboardX writes the event files: no TensorFlow
    and no ``tensorboard`` server package needed to write them), the config as text."""

    def __init__(self, log_dir: str | Path | None = None):
        self._module = _require("tensorboardX", "tensorboardX", "tensorboard")
        self.log_dir = log_dir
        self.writer = None

    def on_train_begin(self, trainer):
        self.log_dir = Path(self.log_dir or tensorboard_dir(trainer.run_id))
        self.writer = self._module.SummaryWriter(logdir=str(self.log_dir))
        self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in _flat_params(trainer.cfg).items()),
                             trainer.step)

    def on_log(self, trainer, step, metrics):
        for k, v in metrics.items():
            if v is not None:
                self.writer.add_scalar(k, float(v), step)
        self.writer.flush()

    def on_train_end(self, trainer, status, error=None):
        if self.writer is not None:
            self.writer.close()


def mlflow_key(key: str) -> str:
    """A metric name MLflow accepts (letters, digits, _ - . / : and spaces): ``live/p=0.50,0.50/...`` →
    ``live/p_0.50_0.50/...``, ``rewards/length:target=30/mean`` → ``rewards/length:target_30/mean``."""
    return re.sub(r"[^/\w.\- :]", "_", key)


class MLflowCallback(TrainerCallback):
    """One MLflow run per training run: the config as parameters, every logged metric at its step, the end status.

    The tracking URI is MLflow's own setting (``MLFLOW_TRACKING_URI``; unset: ``sqlite:///$PAMA_HOME/mlflow.db``,
    since MLflow 3 refuses its file store unless ``MLFLOW_ALLOW_FILE_STORE=true``); the experiment is
    ``MLFLOW_EXPERIMENT_NAME`` or ``pama``, as transformers' MLflow callback reads them. A resumed run continues its
    MLflow run (found by the ``pama_run_id`` tag)."""

    def __init__(self, tracking_uri: str | None = None, experiment: str | None = None):
        _require("mlflow", "mlflow-skinny", "mlflow")
        self.tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or \
            f"sqlite:///{paths.home() / 'mlflow.db'}"
        self.experiment = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "pama"
        self.client = None
        self.mlflow_run_id: str | None = None

    def on_train_begin(self, trainer):
        # optional: mlflow-skinny, only for report_to: [mlflow]
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(self.tracking_uri)
        exp = self.client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(self.experiment)
        found = self.client.search_runs([exp_id], f"tags.pama_run_id = '{trainer.run_id}'", max_results=1)
        if found:  # a resumed run: the parameters are logged already (MLflow refuses to change them)
            self.mlflow_run_id = found[0].info.run_id
            self.client.update_run(self.mlflow_run_id, status="RUNNING")
            return
        run = self.client.create_run(exp_id, run_name=trainer.cfg.name or trainer.run_id,
                                     tags={"pama_run_id": trainer.run_id, "method": trainer.cfg.method})
        self.mlflow_run_id = run.info.run_id
        self.client.log_batch(self.mlflow_run_id, params=[Param(k, v) for k, v in _flat_params(trainer.cfg).items()])

    def on_log(self, trainer, step, metrics):
        from mlflow.entities import Metric  # optional: mlflow-skinny, only for report_to: [mlflow]

        now = int(time.time() * 1000)
        rows = [Metric(mlflow_key(k), float(v), now, step) for k, v in metrics.items() if v is not None]
        if rows:
            self.client.log_batch(self.mlflow_run_id, metrics=rows)

    def on_train_end(self, trainer, status, error=None):
        if self.client is not None and self.mlflow_run_id is not None:
            self.client.set_terminated(self.mlflow_run_id, status={"finished": "FINISHED", "cancelled": "KILLED"}
                                       .get(status, "FAILED"))


INTEGRATIONS: dict[str, Callable[[], TrainerCallback]] = {"tensorboard": TensorBoardCallback,
                                                          "mlflow": MLflowCallback}


def integrations(report_to: Iterable[str]) -> list[TrainerCallback]:
    """The callbacks ``report_to`` names ('none' alone, or nothing: none); an unknown name is a ValueError."""
    names = [str(n).strip().lower() for n in (report_to or []) if str(n).strip()]
    unknown = [n for n in names if n not in REPORT_TO]
    if unknown:
        raise ValueError(f"report_to: unknown integration(s) {unknown}; choose from {', '.join(REPORT_TO)}")
    return [INTEGRATIONS[n]() for n in dict.fromkeys(names) if n != "none"]
