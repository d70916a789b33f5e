"""``method: trl-grpo``: a run trained by TRL's ``GRPOTrainer`` on this project's model, LoRA, prompts and objectives,
stored as any other run is (the run row, per-step metrics, heartbeats, status, a PEFT adapter), so its adapter is a
point on the front, in Compare, in blind votes and in mixtures.

The objectives are TRL keyword reward functions (``f(prompts=, completions=, completion_ids=, **kw)``), one each,
named after the objective, with ``reward_weights`` = the run's preference and ``multi_objective_aggregation`` =
``aggregation``. Our settings map onto GRPOConfig's (table in docs/PAMA_SPEC.md); what TRL cannot do (the adaptive
target KL, value heads, GAE, whitening, Noon, a conditioned adapter) is said there and by ``unsupported(cfg)``.
Reporting goes through the same callbacks as ``pama.trainer`` (pama.callbacks): a small facade (``GrpoRun``) carries
what they read (cfg, run_id, step, objectives, model, tokenizer, accelerator, log). TRL's own checkpoints (optimizer,
scheduler, RNG states) live under ``<run dir>/trl``; every save also writes ``<run dir>/step-N/adapter`` (PEFT), the
run's ``adapter_path``. One process only (no ``accelerate launch`` for this method).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from pathlib import Path
from typing import Callable, Iterable

from . import models, paths
from . import objectives as objmod
from .callbacks import (CallbackHandler, StepFunctionCallback, StoreCallback, TrainerCallback, TrainerControl,
                        integrations)
from .config import ConfigError, TrainConfig
from .prompts import load_prompts

TRL_DIR = "trl"                       # TRL's checkpoint-N folders, under the run's folder
LATEST = "LATEST"                     # the same pointer file as pama.trainer's checkpoints


class Cancelled(Exception):
    """The run was cancelled (the store's status, SIGTERM, Ctrl-C); pama.trainer turns it into RunCancelled."""


METHOD = "trl-grpo"


def handles(cfg: TrainConfig) -> bool:
    """Whether this module trains ``cfg`` (pama.trainer asks, so that its loop names no method)."""
    return cfg.method == METHOD


def unsupported(cfg: TrainConfig) -> list[str]:
    """Settings of this config that TRL's GRPO does not use, one line each (printed by the CLI, listed in the docs)."""
    out = []
    if cfg.kl_coef and cfg.target_kl:
        out.append(f"target_kl {cfg.target_kl:g}: TRL's β is fixed at kl_coef = {cfg.kl_coef:g}; the adaptive KL "
                   "controller does not apply")
    out.append("gamma, lam, vf_coef, cliprange_value, whiten_advantages, kl_horizon: GRPO has no value heads and no "
               "GAE (its advantage is the group-normalised sequence reward)")
    return out


def optimizer_steps_per_rollout(cfg: TrainConfig) -> int:
    """TRL takes one optimizer step per mini-batch and iteration; our `step` is one rollout batch."""
    return cfg.ppo_epochs * cfg.mini_batches


def grpo_config(cfg: TrainConfig, output_dir: Path, *, progress: bool = False):
    """Our settings → TRL's GRPOConfig (docs/PAMA_SPEC.md has the table)."""
    import torch  # heavy
    from trl import GRPOConfig  # heavy

    per = optimizer_steps_per_rollout(cfg)
    cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    return GRPOConfig(
        output_dir=str(output_dir), seed=cfg.seed, data_seed=cfg.seed,
        per_device_train_batch_size=cfg.batch_size // cfg.mini_batches, steps_per_generation=cfg.mini_batches,
        gradient_accumulation_steps=1, num_generations=cfg.samples_per_prompt,
        max_completion_length=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p, top_k=0,
        learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_schedule, warmup_steps=0, weight_decay=0.0,
        max_grad_norm=cfg.max_grad_norm, beta=cfg.kl_coef, num_iterations=cfg.ppo_epochs, epsilon=cfg.cliprange,
        reward_weights=list(cfg.normalised_preference().as_list()),
        multi_objective_aggregation=cfg.aggregation, max_steps=cfg.steps * per,
        logging_strategy="steps", logging_steps=per, save_strategy="steps", save_steps=cfg.save_every * per,
        save_total_limit=1, use_cpu=cpu, bf16=False, fp16=False, activation_checkpointing=False, use_vllm=False,
        report_to="none", disable_tqdm=not progress, dataloader_num_workers=0, disable_dropout=True,
        log_completions=False,
    )


def _text(x) -> str:
    return x[-1]["content"] if isinstance(x, list) else str(x)


def reward_functions(objectives, cfg: TrainConfig, eos_ids: set[int], raw: dict) -> list[Callable]:
    """One TRL reward function per objective, named after it (TRL logs ``rewards/<name>/mean``). Each returns the
    objective's scores minus ``missing_eos_penalty`` × its bound range where the completion has no EOS (from
    ``completion_ids``), as pama.trainer penalises; the raw scores and the EOS shares go to ``raw`` for the metrics."""
    def make(obj):
        span = obj.upper - obj.lower

        def reward(prompts, completions, completion_ids=None, **kw):
            scores = [float(v) for v in obj.score([_text(p) for p in prompts], [_text(c).strip() for c in completions])]
            ended = [any(t in eos_ids for t in ids) for ids in completion_ids] if completion_ids is not None \
                else [True] * len(scores)
            raw[obj.name], raw["ended"] = scores, ended
            pen = cfg.missing_eos_penalty * span
            return [s - (0.0 if e else pen) for s, e in zip(scores, ended)]

        reward.__name__ = obj.name
        return reward
    return [make(o) for o in objectives]


def _mean_std(xs: list[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    return m, (math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0)


def translate(logs: dict, raw: dict, objectives, cfg: TrainConfig) -> dict[str, float]:
    """TRL's logged names → this project's metric keys (what views/runs.py and pama.plots draw); the rest kept under
    ``trl/``. ``kl`` is per response (nats summed over its tokens, as pama.trainer logs it): TRL's per-token mean
    times the mean completion length; TRL's own value is ``kl/per_token``."""
    out: dict[str, float] = {}
    for o in objectives:
        if raw.get(o.name):
            out[f"rewards/{o.name}/mean"], out[f"rewards/{o.name}/std"] = _mean_std(raw[o.name])
    length = logs.get("completions/mean_length")
    if logs.get("kl") is not None:
        out["kl/per_token"] = float(logs["kl"])
        if length is not None:
            out["kl"] = float(logs["kl"]) * float(length)
    out["beta"] = float(cfg.kl_coef)
    if logs.get("loss") is not None:
        out["loss/policy"] = out["loss/total"] = float(logs["loss"])
    if logs.get("clip_ratio/region_mean") is not None:
        out["ppo/clipfrac"] = float(logs["clip_ratio/region_mean"])
    if length is not None:
        out["response_length"] = float(length)
    if raw.get("ended"):
        out["eos_fraction"] = sum(raw["ended"]) / len(raw["ended"])
    for k, v in logs.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) \
                and k not in ("epoch", "kl", "loss"):
            out.setdefault(f"trl/{k}", float(v))
    return out


def last_trl_checkpoint(run_dir: Path) -> Path | None:
    """TRL's newest complete checkpoint-N folder under the run's ``trl/`` (trainer_state.json written last)."""
    found = [p for p in (Path(run_dir) / TRL_DIR).glob("checkpoint-*")
             if re.fullmatch(r"checkpoint-\d+", p.name) and (p / "trainer_state.json").is_file()]
    return max(found, key=lambda p: int(p.name.split("-")[1]), default=None)


class GrpoRun:
    """What the callbacks read of a trainer (pama.callbacks.TrainerCallback), for a run TRL trains."""

    def __init__(self, cfg: TrainConfig, callbacks: CallbackHandler, objectives, model, tokenizer):
        self.cfg, self.callbacks, self.objectives = cfg, callbacks, objectives
        self.model, self.tokenizer = model, tokenizer
        self.accelerator = None
        self.run_id: str = ""
        self.run_dir: Path = Path()
        self.step = 0
        self.is_main = True

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.callbacks.call("on_log", self, step, metrics)

    def save_adapter(self, trl_checkpoint: Path | None) -> Path:
        """``step-N/adapter`` (PEFT) written in a temporary folder and renamed, LATEST moved, older ones removed."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        name = f"step-{self.step:06d}"
        final, tmp = self.run_dir / name, self.run_dir / f".{name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        self.model.save_pretrained(tmp / "adapter")
        (tmp / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=2))
        if trl_checkpoint is not None:
            (tmp / "trl_checkpoint.txt").write_text(str(trl_checkpoint.relative_to(self.run_dir)))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        ptr = self.run_dir / f".{LATEST}.tmp-{os.getpid()}"
        ptr.write_text(name)
        os.replace(ptr, self.run_dir / LATEST)
        for old in [*self.run_dir.glob("step-*"), *self.run_dir.glob(".step-*.tmp-*")]:
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)
        self.callbacks.call("on_save", self, final)
        return final


def _bridge(run: GrpoRun, raw: dict):
    """A transformers TrainerCallback that turns TRL's events into ours, per rollout step (TRL's global_step counts
    optimizer steps: ppo_epochs × mini_batches of them per rollout)."""
    from transformers import TrainerCallback as HFCallback  # heavy

    per = optimizer_steps_per_rollout(run.cfg)

    class Bridge(HFCallback):
        t0 = time.perf_counter()

        def on_step_begin(self, args, state, control, **kw):
            if state.global_step % per == 0:   # a new rollout: was the run cancelled?
                ours = TrainerControl()
                run.callbacks.call("on_step_begin", run, ours)
                if ours.should_cancel:
                    raise Cancelled()
                Bridge.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if state.global_step == state.max_steps:
                control.should_save = True     # the last step is always saved, as pama.trainer does

        def on_log(self, args, state, control, logs=None, **kw):
            if not logs or "train_runtime" in logs or state.global_step % per:
                return
            run.step = state.global_step // per
            metrics = translate(logs, raw, run.objectives, run.cfg)
            metrics["time/step"] = time.perf_counter() - Bridge.t0
            run.log(run.step, metrics)
            run.callbacks.call("on_step_end", run, run.step, metrics)

        def on_save(self, args, state, control, **kw):
            run.step = state.global_step // per
            run.save_adapter(Path(args.output_dir) / f"checkpoint-{state.global_step}")

    return Bridge()


def train(cfg: TrainConfig, store=None, *, run_id: str | None = None, progress: bool = True,
          on_step: Callable[[int, dict], None] | None = None, model=None, tokenizer=None,
          sweep_id: str | None = None, name: str | None = None,
          callbacks: Iterable[TrainerCallback] | None = None, resume: bool = False) -> str:
    """Train (or, with ``resume``, continue from TRL's last checkpoint under the run's folder) a trl-grpo run;
    returns its id. Callbacks as for ``pama.trainer.train``; raises Cancelled when the run is cancelled."""
    import torch  # heavy
    from datasets import Dataset  # heavy
    from peft import LoraConfig  # heavy
    from trl import GRPOTrainer  # heavy

    if not handles(cfg):
        raise ConfigError(f"pama.trl_grpo trains method {METHOD}, not {cfg.method}")
    cbs = list(callbacks or [])
    if store is not None and not any(isinstance(cb, StoreCallback) for cb in cbs):
        cbs.insert(0, StoreCallback(store))
    if on_step is not None:
        cbs.append(StepFunctionCallback(on_step))
    reporters = [cb for cb in cbs if isinstance(cb, StoreCallback)] + integrations(cfg.report_to)
    handler = CallbackHandler(reporters + [cb for cb in cbs if not isinstance(cb, StoreCallback)])
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    objectives = [objmod.get(o) for o in cfg.objectives]
    prompts = load_prompts(cfg.prompts)
    torch.manual_seed(cfg.seed)
    if model is None:
        model, tokenizer = models.load(cfg.model, seed=cfg.seed, dtype=getattr(torch, cfg.dtype))
    eos = {i for i in models.eos_ids(model, tokenizer) if i is not None}
    chat = bool(getattr(tokenizer, "chat_template", None))   # as models.generate formats prompts
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": p}] if chat else p} for p in prompts])
    all_linear = list(cfg.target_modules) == ["all-linear"]
    missing = [] if all_linear else [m for m in cfg.target_modules
                                     if not any(n.endswith(m) for n, _ in model.named_modules())]
    if missing:
        raise ConfigError(f"target_modules {missing} are not modules of {cfg.model}; e.g. q_proj,v_proj for "
                          "Llama-style models, c_attn for GPT-2")
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, task_type="CAUSAL_LM",
                      target_modules="all-linear" if all_linear else list(cfg.target_modules))

    run = GrpoRun(cfg, handler, objectives, model, tokenizer)
    if run_id is None:
        run_id = handler.create_run(run, name=name, sweep_id=sweep_id)
    run.run_id, run.run_dir = run_id, paths.run_dir(run_id)
    raw: dict = {}
    args = grpo_config(cfg, run.run_dir / TRL_DIR, progress=progress)
    trainer = GRPOTrainer(model=model, reward_funcs=reward_functions(objectives, cfg, eos, raw), args=args,
                          train_dataset=data, processing_class=tokenizer, peft_config=lora,
                          callbacks=[_bridge(run, raw)])
    if not progress:  # transformers prints every log dict when its progress bar is off: the store keeps them
        from transformers.trainer_callback import PrinterCallback  # heavy

        trainer.remove_callback(PrinterCallback)
    run.model, run.accelerator = trainer.model, trainer.accelerator
    checkpoint = last_trl_checkpoint(run.run_dir) if resume else None
    if checkpoint is not None:
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        run.step = int(state["global_step"]) // optimizer_steps_per_rollout(cfg)
    try:
        handler.call("on_train_begin", run)
        if run.step < cfg.steps:
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint is not None else None)
        handler.end(run, "finished")
    except (Cancelled, KeyboardInterrupt):
        handler.end(run, "cancelled", "cancelled by the user")
        raise Cancelled(run_id) from None
    except Exception as err:
        handler.end(run, "failed", f"{type(err).__name__}: {err}")
        raise
    return run_id
