"""Noon PPO on a LoRA adapter with PAMA's closed-form combination of objectives, and the MORLHF / MGDA baselines.

One step: rollout → rewards per objective → KL-shaped per-objective returns → GAE → whitening → Noon →
combination (PAMA per token, MORLHF on the scalarised stream, MGDA by min-norm gradient weights) → clipped PPO
update of the adapter and one value head per objective. The reference policy is the same model with the adapter
disabled. Every step's metrics go to the callbacks (pama.callbacks: the store's writer, TensorBoard, MLflow, the live
front), none of which the trainer needs; checkpoints are atomic and a stopped run resumes.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from . import algorithm as alg
from . import models, paths, trl_grpo
from . import objectives as objmod
from .callbacks import (CallbackHandler, StepFunctionCallback, StoreCallback, TrainerCallback, TrainerControl,
                        integrations)
from .conditioning import make_conditioner
from .config import ConfigError, TrainConfig, from_dict
from .logprobs import ended_on_eos, response_mask, seq_logprobs_and_hidden
from .methods import create as create_method
from .methods import mgda_loss_weights  # noqa: F401  (pama.trainer.mgda_loss_weights, as the benchmarks import it)
from .procs import pid_alive
from .prompts import PromptSampler, load_prompts
from .runs import create_run_record, default_run_name, preflight  # noqa: F401  (also pama.trainer.*)
from .sampling import onednn_linears
from .store import Store

CHECKPOINT_POINTER = "LATEST"


class RunCancelled(Exception):
    pass


@dataclass
class Rollout:
    input_ids: torch.Tensor       # (B, Q+T)
    attention_mask: torch.Tensor  # (B, Q+T)
    response_mask: torch.Tensor   # (B, T) float: response tokens up to and including the first EOS
    query_len: int
    prompts: list[str]
    responses: list[str]
    ended: torch.Tensor | None = None  # (B,) bool: the response ended on EOS before max_new_tokens
    preference: torch.Tensor | None = None  # (B, n): each sample's preference in a conditioned run, else None

    def subset(self, idx: torch.Tensor) -> "Rollout":
        """The rows ``idx`` of the tensors a forward needs (a PPO mini-batch)."""
        return Rollout(self.input_ids[idx], self.attention_mask[idx], self.response_mask[idx], self.query_len, [], [],
                       preference=None if self.preference is None else self.preference[idx])


class ValueHeads(nn.Module):
    """One linear value head per objective on the policy's last hidden state (a single (H → n) layer); in a
    conditioned run the heads see the sample's preference too: input cat(h, p), (H + extra → n)."""

    def __init__(self, hidden_size: int, n: int, extra: int = 0):
        super().__init__()
        self.linear = nn.Linear(hidden_size + extra, n)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, h: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:  # (B, T, H) → (n, B, T)
        x = h.float()
        if cond is not None:  # (B, extra), the same on every token
            x = torch.cat([x, cond.to(x).unsqueeze(1).expand(-1, x.shape[1], -1)], dim=-1)
        return self.linear(x).permute(2, 0, 1)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


CHECKPOINT_FILES = ("state.pt", "adapter/adapter_config.json", "adapter/adapter_model.safetensors")


class CheckpointError(ConfigError):
    """A run's checkpoints exist but none can be loaded (truncated, corrupt); the message says what to do."""


def rng_state() -> dict:
    """The RNG states a step draws from (torch, CUDA, numpy, random), saved with each checkpoint so that a resumed
    run continues as an uninterrupted one would (mini-batch order, anything else drawing from the global RNGs)."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _complete(ckpt: Path) -> bool:
    return ckpt.is_dir() and all((ckpt / f).is_file() for f in CHECKPOINT_FILES)


def checkpoints(run_dir: Path) -> list[Path]:
    """The run's complete checkpoints, best first: LATEST's target, then the other step-N folders, newest first.

    Temporary folders left by a killed save (``.step-N.tmp-PID``) never count; a LATEST that points at a missing
    or incomplete folder is skipped in favour of the next complete one."""
    run_dir = Path(run_dir)
    found: list[Path] = []
    with contextlib.suppress(OSError, UnicodeDecodeError):
        name = (run_dir / CHECKPOINT_POINTER).read_text().strip()
        if name.startswith("step-") and "/" not in name and "\\" not in name:
            found.append(run_dir / name)
    steps = [p for p in run_dir.glob("step-*") if p.name[5:].isdigit()]
    found += [p for p in sorted(steps, key=lambda p: int(p.name[5:]), reverse=True) if p not in found]
    return [p for p in found if _complete(p)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = checkpoints(run_dir)
    return found[0] if found else None


class Trainer:
    """Holds model, adapter, value heads, optimiser and KL controller for one run.

    ``callbacks`` (``pama.callbacks.TrainerCallback``) receive the run's reports; ``cfg.report_to`` adds the
    TensorBoard / MLflow ones. ``store`` is a shorthand for a ``StoreCallback(store)`` in front; without one the
    run is kept nowhere but its checkpoint folder (its id made here)."""

    def __init__(self, cfg: TrainConfig, store: Store | None = None, *, run_id: str | None = None,
                 progress: bool = True, on_step: Callable[[int, dict], None] | None = None, model=None,
                 tokenizer=None, sweep_id: str | None = None, name: str | None = None,
                 callbacks: Iterable[TrainerCallback] | None = None):
        self.cfg = cfg
        self.progress = progress
        cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
        self.accelerator = Accelerator(cpu=cpu)
        self.device = self.accelerator.device
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.is_main = self.accelerator.is_main_process
        cbs = list(callbacks or [])
        if store is not None and not any(isinstance(cb, StoreCallback) for cb in cbs):
            cbs.insert(0, StoreCallback(store))
        if on_step is not None:
            cbs.append(StepFunctionCallback(on_step))
        # callbacks report once, from the main process (the integrations' imports fail here, before any work); the
        # reporters come first, so that they are ready when another callback logs from its on_train_begin
        reporters = [cb for cb in cbs if isinstance(cb, StoreCallback)] + (integrations(cfg.report_to)
                                                                           if self.is_main else [])
        others = [cb for cb in cbs if not isinstance(cb, StoreCallback)]
        self.callbacks = CallbackHandler(reporters + others if self.is_main else [])
        store_cb = self.callbacks.find(StoreCallback)
        self.store = store_cb.store if store_cb is not None else None
        self.objectives = [objmod.get(o) for o in cfg.objectives]
        self.n = len(self.objectives)
        self.preference = cfg.normalised_preference()
        self.prompts = load_prompts(cfg.prompts)
        world = self.accelerator.num_processes
        self.k = max(1, cfg.samples_per_prompt)
        self.sampler = PromptSampler(self.prompts, cfg.batch_size // self.k * world, seed=cfg.seed)

        torch.manual_seed(cfg.seed)
        if model is None:
            model, tokenizer = models.load(cfg.model, seed=cfg.seed, dtype=getattr(torch, cfg.dtype))
        self.tokenizer = tokenizer
        self.eos_ids = models.eos_ids(model, tokenizer)
        # a conditioned run draws a preference per prompt group and feeds it to the policy (docs/conditioned.md)
        self.conditioner = make_conditioner(cfg, [o.name for o in self.objectives])
        self.model = self.conditioner.wrap(self._with_adapter(model), cfg.model)

        # the run record, created only once model and adapter loaded (a bad model leaves no run behind): the main
        # process creates it (the store callback's row, else a fresh id); every process learns its id
        if self.is_main and run_id is None:
            run_id = self.callbacks.create_run(self, name=name, sweep_id=sweep_id)
        holder = [run_id]
        if world > 1:
            broadcast_object_list(holder)
        self.run_id = holder[0]
        self.run_dir = paths.run_dir(self.run_id)

        self.method = create_method(cfg, self.preference)
        self.value_heads = ValueHeads(model.config.hidden_size, self.method.n_value_heads(self.n),
                                      self.conditioner.value_inputs())
        params = [p for p in self.model.parameters() if p.requires_grad] + list(self.value_heads.parameters())
        self.optimizer = torch.optim.Adam(params, lr=cfg.learning_rate)
        self.kl_ctl = alg.AdaptiveKLController(cfg.kl_coef, cfg.target_kl or None, cfg.kl_horizon)
        self.model, self.value_heads, self.optimizer = self.accelerator.prepare(
            self.model, self.value_heads, self.optimizer)
        # the adapter's parameters, for methods whose policy loss takes extra backward passes (MGDA)
        self._policy_params = [p for p in self.model.parameters() if p.requires_grad]
        self.step = 0
        self._resume_if_possible()

    # -- setup ----------------------------------------------------------------------------------------------------
    def _with_adapter(self, model):
        if isinstance(model, PeftModel):
            return model
        cfg = self.cfg
        all_linear = list(cfg.target_modules) == ["all-linear"]  # PEFT's name for every linear layer but the head
        missing = [] if all_linear else [m for m in cfg.target_modules
                                         if not any(n.endswith(m) for n, _ in model.named_modules())]
        if missing:
            raise ConfigError(f"target_modules {missing} are not modules of {cfg.model}; e.g. q_proj,v_proj for "
                              "Llama-style models, c_attn for GPT-2")
        lora = LoraConfig(r=self.conditioner.lora_rank(cfg.lora_r), lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules="all-linear" if all_linear else list(cfg.target_modules),
                          task_type="CAUSAL_LM")
        return get_peft_model(model, lora)

    def _resume_if_possible(self) -> None:
        """Load the best complete checkpoint; a corrupt one is skipped for an older one, none loadable is an error."""

        problems = []
        for ckpt in checkpoints(self.run_dir):
            try:  # read everything before touching the model, so a corrupt file leaves it untouched
                state = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=False)
                weights = load_file(ckpt / "adapter" / "adapter_model.safetensors")
                if not isinstance(state, dict) or not {"step", "optimizer", "kl_ctl", "value_heads"} <= set(state):
                    raise ValueError("state.pt lacks step/optimizer/kl_ctl/value_heads")
                self.conditioner.check(ckpt / "adapter")
                break
            except Exception as err:  # noqa: BLE001 - torch.load / safetensors raise many types for bad files
                problems.append(f"{ckpt.name} ({type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''})")
                warnings.warn(f"checkpoint {ckpt} is corrupt or truncated; trying an older one", stacklevel=2)
        else:
            if problems:
                raise CheckpointError(
                    f"cannot resume run {self.run_id}: no loadable checkpoint under {self.run_dir}: "
                    f"{'; '.join(problems)}. Delete the corrupt folder(s) to restart the run from step 0, or restore "
                    "them from a backup")
            return
        model = self.accelerator.unwrap_model(self.model)
        set_peft_model_state_dict(model, weights)
        self.conditioner.load(model, ckpt / "adapter")
        self.accelerator.unwrap_model(self.value_heads).load_state_dict(state["value_heads"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.kl_ctl.load_state_dict(state["kl_ctl"])
        self.step = int(state["step"])
        if "rng" in state:  # checkpoints written before the RNG states were saved resume without them
            set_rng_state(state["rng"])

    # -- one PPO step ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def rollout(self, step: int) -> Rollout:
        cfg = self.cfg
        batch = self.sampler.batch(step - 1)
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        prompts = batch[rank::world] if world > 1 else batch
        pref = self.conditioner.draw(step, len(prompts), self.k, rank=rank, world=world)  # one p per prompt group
        prompts = [p for p in prompts for _ in range(self.k)]  # k samples of a prompt stay adjacent (a group)
        model = self.accelerator.unwrap_model(self.model)
        model.eval()
        with self.conditioner.policy(model, pref):
            texts, enc, new = models.generate(
                model, self.tokenizer, self.conditioner.prompts(prompts, pref, self.tokenizer),
                max_new_tokens=cfg.max_new_tokens,
                temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed * 1_000_003 + step * 101 + rank,
                return_ids=True)
        rmask = response_mask(new, self.eos_ids)
        input_ids = torch.cat([enc["input_ids"], new], dim=1)
        attn = torch.cat([enc["attention_mask"], rmask.long()], dim=1)
        ended = ended_on_eos(new, self.eos_ids)
        return Rollout(input_ids, attn, rmask.to(self.device), enc["input_ids"].shape[1], prompts, texts,
                       ended.to(self.device), None if pref is None else pref.to(self.device))

    def score(self, ro: Rollout) -> torch.Tensor:
        scores = objmod.score_all(self.objectives, ro.prompts, ro.responses)
        return torch.as_tensor(scores, dtype=torch.float32, device=self.device)  # (n, B)

    def control_length(self, scores: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """With ``length_controlled_rewards``: scores (n, B) without their trend on log length (alg.length_residual),
        and each fitted slope as a metric; otherwise the scores as they are."""
        if not self.cfg.length_controlled_rewards:
            return scores, {}
        keep = [not o.measures_length for o in self.objectives]
        out, slope = alg.length_residual(scores, lengths, self.k, keep)
        return out, {f"length_control/slope/{o.name}": float(slope[i])
                     for i, o in enumerate(self.objectives) if keep[i]}

    def penalise_unfinished(self, scores: torch.Tensor, ended: torch.Tensor) -> torch.Tensor:
        """Scores (n, B) minus missing_eos_penalty × each objective's bound range where a response did not end."""
        if not self.cfg.missing_eos_penalty:
            return scores
        span = torch.tensor([o.upper - o.lower for o in self.objectives], dtype=scores.dtype, device=scores.device)
        return scores - self.cfg.missing_eos_penalty * span.unsqueeze(1) * (~ended).to(scores.dtype).unsqueeze(0)

    def train_step(self, step: int) -> dict[str, float]:
        t0 = time.perf_counter()
        for group in self.optimizer.param_groups:   # stateless: a resumed run takes up its schedule where it was
            group["lr"] = alg.scheduled_lr(self.cfg.learning_rate, step, self.cfg.steps, self.cfg.lr_schedule)
        ro = self.rollout(step)
        t1 = time.perf_counter()
        scores = self.score(ro)
        t2 = time.perf_counter()
        rewards, slopes = self.control_length(scores, ro.response_mask.sum(1))
        stats = self._update(ro, self.penalise_unfinished(rewards, ro.ended))
        t3 = time.perf_counter()

        gathered = self.accelerator.gather(scores.T.contiguous()).T if self.accelerator.num_processes > 1 else scores
        metrics = {f"rewards/{o.name}/mean": float(gathered[i].mean()) for i, o in enumerate(self.objectives)}
        metrics.update({f"rewards/{o.name}/std": float(gathered[i].std()) if gathered.shape[1] > 1 else 0.0
                        for i, o in enumerate(self.objectives)})
        metrics.update(stats)
        metrics.update(slopes)
        metrics.update({"time/generate": t1 - t0, "time/score": t2 - t1, "time/update": t3 - t2,
                        "time/step": t3 - t0, "response_length": float(ro.response_mask.sum(1).mean()),
                        "eos_fraction": float(ro.ended.float().mean())})
        metrics.update(self.conditioner.metrics(ro.preference))
        return metrics

    def _forward(self, ro: Rollout, *, adapter: bool = True, grad: bool = True):
        model = self.accelerator.unwrap_model(self.model)
        with contextlib.nullcontext() if grad else torch.no_grad(), onednn_linears(model):
            temperature = self.cfg.temperature
            if adapter:
                with self.conditioner.policy(model, ro.preference):
                    logp, h = seq_logprobs_and_hidden(self.model, ro.input_ids, ro.attention_mask, ro.query_len,
                                                      temperature=temperature)
                return logp, self.value_heads(h, ro.preference)
            with model.disable_adapter():
                logp, _ = seq_logprobs_and_hidden(self.model, ro.input_ids, ro.attention_mask, ro.query_len,
                                                  hidden=False, temperature=temperature)
            return logp, None

    def _advantages(self, scores, old_logp, ref_logp, old_values, mask, preference=None):
        """KL-shaped per-objective rewards → GAE → whitening → Noon; MORLHF works on the scalarised stream."""
        cfg = self.cfg
        kl = (old_logp - ref_logp) * mask                                   # (B, T)
        beta = self.kl_ctl.value
        if self.k > 1:  # per-prompt baseline: centre each objective's reward within each prompt's k samples
            scores = alg.centre_in_groups(scores, self.k)
        if cfg.scale_rewards == "batch":  # every objective at unit spread before the KL penalty joins it
            scores = alg.scale_by_spread(scores)
        scores = self.method.reward_streams(scores, preference)             # (k, B): MORLHF scalarises
        n_streams = scores.shape[0]
        B, T = mask.shape
        last = (mask.sum(1).long() - 1).clamp(min=0)                        # index of the last response token
        rewards = alg.kl_penalty(kl, mask, beta, cfg.kl_shaping).unsqueeze(0).repeat(n_streams, 1, 1)  # (n, B, T)
        rewards[:, torch.arange(B, device=mask.device), last] += scores
        adv, returns = alg.gae(rewards, old_values, mask.unsqueeze(0).expand(n_streams, B, T), cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            adv = alg.whiten(adv, mask.unsqueeze(0).expand_as(adv))
        if cfg.uses_noon():
            adv = alg.noon(adv)
        return adv * mask, returns, kl

    def _combine(self, adv, mask, preference=None):
        """(n, B, T) advantages → (B, T) combined advantage and (n, B, T) weights, as the method combines them
        (with each sample's own preference in a conditioned run)."""
        return self.method.combine(adv, mask, preference)

    def _update(self, ro: Rollout, scores: torch.Tensor) -> dict[str, float]:
        cfg = self.cfg
        mask = ro.response_mask
        # dropout off in every RL forward (TRL's disable_dropout): π_ref, π_old and π_θ must be the same network, or
        # independent dropout masks make the KL and the ratio noisy (GPT-2 has dropout 0.1; LoRA's dropout too)
        self.model.eval()
        ref_logp, _ = self._forward(ro, adapter=False, grad=False)
        fused = cfg.ppo_epochs == 1 and cfg.mini_batches == 1
        if fused:
            # one epoch, one mini-batch: the rollout policy is the current policy, so the first training forward
            # gives π_old's log-probs and values too (detached) instead of a separate no-grad forward.
            logp, values = self._forward(ro)
            old_logp, old_values = logp.detach(), values.detach()
        else:
            old_logp, old_values = self._forward(ro, grad=False)
        adv, returns, kl = self._advantages(scores, old_logp, ref_logp, old_values, mask, ro.preference)
        combined, weights = self._combine(adv, mask, ro.preference)
        # eos_weight: ending on EOS as its own term of the loss, outside the preference (alg.end_credit)
        ends = alg.end_credit(ro.ended, mask, self.k, cfg.eos_credit, cfg.eos_min_tokens) if cfg.eos_weight else None

        stats: dict[str, list[float]] = {}
        B = mask.shape[0]
        mb = max(1, B // cfg.mini_batches)
        for epoch in range(cfg.ppo_epochs):
            order = torch.randperm(B, device=mask.device) if cfg.mini_batches > 1 else torch.arange(B, device=mask.device)
            for start in range(0, B, mb):
                idx = order[start:start + mb]
                if not (fused and epoch == 0):
                    logp, values = self._forward(ro.subset(idx))
                s = self._loss_and_step(logp, values, old_logp[idx], old_values[:, idx], returns[:, idx],
                                        adv[:, idx], None if combined is None else combined[idx], mask[idx],
                                        None if weights is None else weights[:, idx],
                                        None if ends is None else ends[idx], ref_logp[idx])
                for k, v in s.items():
                    stats.setdefault(k, []).append(v)
        mean_kl = float((kl.sum(1)).mean())
        if self.accelerator.num_processes > 1:
            mean_kl = float(self.accelerator.reduce(torch.tensor(mean_kl, device=self.device), "mean"))
        out = {k: sum(v) / len(v) for k, v in stats.items()}
        out["kl"] = mean_kl
        out["beta"] = self.kl_ctl.value
        self.kl_ctl.update(mean_kl, B * self.accelerator.num_processes)
        out.update(self.method.combine_stats(weights, mask, self.objectives))
        if combined is not None:
            out["advantage/positive_share"] = float(alg.masked_mean((combined > 0).float(), mask))
            out["advantage/mean"] = float(alg.masked_mean(combined, mask))
        return out

    def _loss_and_step(self, logp, values, old_logp, old_values, returns, adv, combined, mask, weights=None,
                       ends=None, ref_logp=None):
        cfg = self.cfg
        # the spec's coefficient is per head: the mean over heads times their number is the sum of per-head losses
        vf_loss = alg.clipped_value_loss(values, old_values, returns, mask, cfg.cliprange_value) * values.shape[0]
        pg_loss, s, stats = self.method.policy_loss(logp, old_logp, adv, combined, mask, self._policy_params,
                                                    self.objectives, weights=weights)
        loss = pg_loss + cfg.vf_coef * vf_loss
        if ends is not None:
            eos_loss, _ = alg.clipped_surrogate(logp, old_logp, ends, mask, cfg.cliprange)
            loss = loss + cfg.eos_weight * eos_loss
            stats["loss/eos"] = eos_loss.item()
        if cfg.kl_shaping == "loss" and ref_logp is not None:   # the KL as a loss term (alg.kl_loss), not a reward
            kl_term = alg.kl_loss(logp, ref_logp, mask)
            loss = loss + self.kl_ctl.value * kl_term
            stats["loss/kl"] = kl_term.item()
        self.optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        if cfg.max_grad_norm:
            self.accelerator.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]],
                                             cfg.max_grad_norm)
        self.optimizer.step()
        stats.update({"loss/policy": pg_loss.item(), "loss/value": vf_loss.item(), "loss/total": loss.item(),
                      "ppo/clipfrac": s["clipfrac"], "ppo/approx_kl": s["approx_kl"]})
        return stats

    # -- checkpoints ----------------------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Write step-N/ in a temporary folder, rename it, then move the LATEST pointer: never half-written."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        name = f"step-{self.step:06d}"
        final = self.run_dir / name
        tmp = self.run_dir / f".{name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        model = self.accelerator.unwrap_model(self.model)
        model.save_pretrained(tmp / "adapter")
        self.conditioner.save(model, tmp / "adapter")   # a conditioned adapter's gates and objectives
        torch.save({"step": self.step, "optimizer": self.optimizer.state_dict(), "kl_ctl": self.kl_ctl.state_dict(),
                    "value_heads": self.accelerator.unwrap_model(self.value_heads).state_dict(),
                    "objectives": [o.name for o in self.objectives], "rng": rng_state()}, tmp / "state.pt")
        (tmp / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _atomic_write_text(self.run_dir / CHECKPOINT_POINTER, name)
        for old in [*self.run_dir.glob("step-*"), *self.run_dir.glob(".step-*.tmp-*")]:
            if old.name != name:  # older checkpoints and temporary folders left by a killed save
                shutil.rmtree(old, ignore_errors=True)
        self.callbacks.call("on_save", self, final)
        return final

    # -- the loop -------------------------------------------------------------------------------------------------
    def _cancel_requested(self) -> bool:
        """The main process asks its callbacks (the store's: was the run cancelled?); with several processes its
        answer is broadcast so all stop together."""
        flag = False
        if self.is_main:
            control = TrainerControl()
            self.callbacks.call("on_step_begin", self, control)
            flag = control.should_cancel
        if self.accelerator.num_processes > 1:
            holder = [flag]
            broadcast_object_list(holder)
            flag = bool(holder[0])
        return flag

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Report metrics at a step to every callback (the step's own, or a callback's: the live front's)."""
        self.callbacks.call("on_log", self, step, metrics)

    def train(self) -> str:
        cfg = self.cfg
        bar = tqdm(total=cfg.steps, initial=self.step, desc=f"{cfg.method} {self.run_id}", unit="step",
                   disable=not (self.progress and self.is_main), dynamic_ncols=True)
        try:
            # inside the try: a callback failing here (an integration, the live front's base evaluation) ends the
            # run as failed in the store instead of leaving it 'running'
            self.callbacks.call("on_train_begin", self)
            while self.step < cfg.steps:
                if self._cancel_requested():
                    raise RunCancelled()
                self.step += 1
                metrics = self.train_step(self.step)
                self.log(self.step, metrics)
                if self.is_main and (self.step % cfg.save_every == 0 or self.step == cfg.steps):
                    self.save_checkpoint()
                self.callbacks.call("on_step_end", self, self.step, metrics)
                bar.update(1)
                bar.set_postfix({k.split("/")[1][:6]: f"{v:.3f}" for k, v in metrics.items()
                                 if k.startswith("rewards/") and k.endswith("/mean")} | {"kl": f"{metrics['kl']:.2f}"})
            self.callbacks.end(self, "finished")
        except (RunCancelled, KeyboardInterrupt):
            self.callbacks.end(self, "cancelled", "cancelled by the user")
            raise RunCancelled(self.run_id) from None
        except Exception as err:
            self.callbacks.end(self, "failed", f"{type(err).__name__}: {err}")
            raise
        finally:
            bar.close()
        self.accelerator.wait_for_everyone()
        return self.run_id


def train(cfg: TrainConfig, store: Store | None = None, *, run_id: str | None = None, progress: bool = True,
          on_step: Callable[[int, dict], None] | None = None, model=None, tokenizer=None,
          sweep_id: str | None = None, name: str | None = None,
          callbacks: Iterable[TrainerCallback] | None = None) -> str:
    """Validate, create (or resume) the run, train to cfg.steps; returns the run id. Without ``store`` or a
    ``StoreCallback`` in ``callbacks`` nothing is written to any store."""
    cfg.validate()
    if trl_grpo.handles(cfg):  # TRL's GRPOTrainer, reporting through the same callbacks (pama.trl_grpo)
        try:
            return trl_grpo.train(cfg, store, run_id=run_id, progress=progress, on_step=on_step, model=model,
                                  tokenizer=tokenizer, sweep_id=sweep_id, name=name, callbacks=callbacks)
        except trl_grpo.Cancelled as err:
            raise RunCancelled(*err.args) from None
    trainer = Trainer(cfg, store, run_id=run_id, progress=progress, on_step=on_step, model=model,
                      tokenizer=tokenizer, sweep_id=sweep_id, name=name, callbacks=callbacks)
    return trainer.train()


def resume(run_id: str, store: Store | None = None, *, steps: int | None = None, progress: bool = True,
           model=None, tokenizer=None,
           callbacks: Iterable[TrainerCallback] | Callable[[TrainConfig], Iterable[TrainerCallback]] | None = None
           ) -> str:
    """Continue a stopped run from its last checkpoint up to ``steps`` (default: the run's own step count).
    ``callbacks``: a list, or a function of the run's stored config that makes one (``livefront.run_callbacks``)."""

    store = store or Store()
    run = store.require_run(run_id)
    if run["status"] == "running" and pid_alive(run["pid"]) and run["pid"] != os.getpid():
        raise ConfigError(f"run {run_id} is still running (pid {run['pid']}); cancel it first")
    cfg = from_dict(TrainConfig, run["config"], source=f"run {run_id}", stored=True)
    if steps is not None:
        cfg = replace(cfg, steps=steps)
    cfg.validate()
    if trl_grpo.handles(cfg):  # TRL restores its own checkpoint (trainer_state, optimizer, scheduler, RNG)
        store.update_run(run_id, config=cfg.to_dict())
        try:
            return trl_grpo.train(cfg, store, run_id=run_id, progress=progress, model=model, tokenizer=tokenizer,
                                  callbacks=callbacks(cfg) if callable(callbacks) else callbacks, resume=True)
        except trl_grpo.Cancelled as err:
            raise RunCancelled(*err.args) from None
    # the checkpoint is loaded (or refused) before the store is touched: a failed resume changes nothing
    trainer = Trainer(cfg, store, run_id=run_id, progress=progress, model=model, tokenizer=tokenizer,
                      callbacks=callbacks(cfg) if callable(callbacks) else callbacks)
    if trainer.is_main:
        store.update_run(run_id, config=cfg.to_dict())
    return trainer.train()
