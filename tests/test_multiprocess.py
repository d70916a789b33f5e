"""Data-parallel training on the CPU: `torchrun --nproc_per_node 2 -m pama train ...` (Accelerate, gloo) records ONE
run with ONE adapter: the main process writes every metric once per step and saves the checkpoints; each process
trains on its own slice of the batch; both end with identical LoRA weights.

The worker below is `python -m pama train` itself (pama.cli.main) with light instrumentation: it counts, per process,
the store writes and checkpoint saves, records the prompts each process rolled out, and dumps its final LoRA weights.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

WORKER = r'''
import os, sys, torch
import pama
from pama import cli, trainer, store as store_mod

out = os.environ["DUMP_DIR"]
calls = {"log_metrics": 0, "save_checkpoint": 0, "prompts": [], "preferences": []}
_log = store_mod.Store.log_metrics
def log_metrics(self, *a, **k):
    calls["log_metrics"] += 1
    return _log(self, *a, **k)
store_mod.Store.log_metrics = log_metrics
_save = trainer.Trainer.save_checkpoint
def save_checkpoint(self):
    calls["save_checkpoint"] += 1
    return _save(self)
trainer.Trainer.save_checkpoint = save_checkpoint
_rollout = trainer.Trainer.rollout
def rollout(self, step):
    ro = _rollout(self, step)
    calls["prompts"].append(list(ro.prompts))
    calls["preferences"].append(None if ro.preference is None else ro.preference.cpu().clone())
    return ro
trainer.Trainer.rollout = rollout
_train = trainer.Trainer.train
def train(self):
    run_id = _train(self)
    model = self.accelerator.unwrap_model(self.model)
    lora = {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}
    heads = {k: v.cpu().clone() for k, v in self.accelerator.unwrap_model(self.value_heads).state_dict().items()}
    torch.save(dict(calls, rank=self.accelerator.process_index, world=self.accelerator.num_processes,
                    is_main=self.is_main, has_store=self.store is not None, run_id=run_id, lora=lora, heads=heads,
                    distributed=str(self.accelerator.distributed_type)),
               os.path.join(out, f"rank{self.accelerator.process_index}.pt"))
    return run_id
trainer.Trainer.train = train
sys.exit(cli.main(sys.argv[1:]))
'''


def _torchrun_available() -> bool:
    try:
        import torch.distributed as dist

        return dist.is_available() and dist.is_gloo_available()
    except ImportError:
        return False


def _train_two_processes(pama_home, tmp_path, steps: int, batch: int, *extra: str):
    """`python -m pama train` under torchrun with two processes; each process's dump (rank 0 first)."""
    import torch

    from pama.store import Store

    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    dump = tmp_path / "dump"
    dump.mkdir()
    env = dict(os.environ, PAMA_HOME=str(pama_home), DUMP_DIR=str(dump), OMP_NUM_THREADS="1",
               OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1",
               PAMA_HEARTBEAT_S="0.5")
    env.pop("PAMA_DB_URL", None)
    Store().close()  # the store exists before the processes start, as with the app
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker),
           "train", "--model", "tiny-random", "--objectives", "sentiment,conciseness", "--steps", str(steps),
           "--batch-size", str(batch), "--samples-per-prompt", "1", "--max-new-tokens", "4", "--threads", "1",
           "--save-every", "2", "--quiet", "--learning-rate", "1e-2", *extra]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-4000:]
    assert res.stdout.count("run id: ") == 1  # printed by the main process only
    dumps = tuple(torch.load(dump / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    shutil.rmtree(dump)
    return dumps


@pytest.mark.skipif(not _torchrun_available(), reason="torch.distributed with gloo is not available")
def test_two_process_data_parallel_training_records_one_run_and_one_adapter(pama_home, tmp_path):
    import torch
    from safetensors.torch import load_file

    from pama import paths, trainer
    from pama.store import Store

    steps, batch = 3, 2
    r0, r1 = _train_two_processes(pama_home, tmp_path, steps, batch)
    assert (r0["world"], r1["world"]) == (2, 2) and "MULTI_CPU" in r0["distributed"]
    assert r0["is_main"] and not r1["is_main"] and r0["has_store"] and not r1["has_store"]
    assert r0["run_id"] == r1["run_id"]

    # one run, metrics written once per step by the main process only
    store = Store()
    runs = store.list_runs()
    assert [r["id"] for r in runs] == [r0["run_id"]]
    run = runs[0]
    assert run["status"] == "finished" and run["step"] == steps
    assert r0["log_metrics"] == steps and r1["log_metrics"] == 0
    rows = store.metrics(run["id"])
    keys = {m["key"] for m in rows}
    assert len(rows) == steps * len(keys) and sorted({m["step"] for m in rows}) == list(range(1, steps + 1))

    # one adapter: saved by the main process only (steps 2 and 3), one folder on disk
    assert r0["save_checkpoint"] == 2 and r1["save_checkpoint"] == 0
    run_dir = paths.run_dir(run["id"])
    assert sorted(p.name for p in run_dir.iterdir()) == ["LATEST", f"step-{steps:06d}"]
    assert Path(run["adapter_path"]) == trainer.latest_checkpoint(run_dir) / "adapter"

    # data parallel: each process rolled out its own half of the global batch (batch_size × world prompts)
    for p0, p1 in zip(r0["prompts"], r1["prompts"]):
        assert len(p0) == len(p1) == batch and set(p0).isdisjoint(p1)

    # identical weights on both processes, equal to the saved adapter, and changed by training
    assert r0["lora"].keys() == r1["lora"].keys() and r0["lora"]
    for name in r0["lora"]:
        assert torch.equal(r0["lora"][name], r1["lora"][name]), name
    for name in r0["heads"]:
        assert torch.equal(r0["heads"][name], r1["heads"][name]), name
    saved = load_file(Path(run["adapter_path"]) / "adapter_model.safetensors")
    assert len(saved) == len(r0["lora"])
    by_suffix = {k.split("base_model.model.", 1)[-1]: v for k, v in saved.items()}
    for name, value in r0["lora"].items():
        key = name.split("base_model.model.", 1)[-1].replace(".default", "")
        assert torch.equal(by_suffix[key], value), name
    assert any(n.endswith("lora_B.default.weight") and v.abs().sum() > 0 for n, v in r0["lora"].items())


@pytest.mark.skipif(not _torchrun_available(), reason="torch.distributed with gloo is not available")
def test_two_process_conditioned_run_draws_preferences_per_process_and_keeps_one_adapter(pama_home, tmp_path):
    """A preference-conditioned run under data parallelism (docs/learnability.md section 33 trains one so): each
    process draws its own preferences for its own prompt groups, and both end with the same adapter, gates
    included, which the main process saved once."""
    import torch

    from pama.store import Store

    steps, batch = 3, 4
    r0, r1 = _train_two_processes(pama_home, tmp_path, steps, batch, "--conditioned", "--samples-per-prompt", "2",
                                  "--lora-r", "0", "--preference-alpha", "0.3")
    run = Store().get_run(r0["run_id"])
    assert run["status"] == "finished" and run["config"]["conditioned"] is True
    assert r0["save_checkpoint"] == 2 and r1["save_checkpoint"] == 0
    for p0, p1 in zip(r0["preferences"], r1["preferences"]):
        assert p0.shape == p1.shape == (batch, 2)
        assert torch.allclose(p0.sum(1), torch.ones(batch)) and torch.equal(p0[0::2], p0[1::2])  # one per group
        assert not torch.allclose(p0, p1)  # each process its own draw
    assert r0["lora"].keys() == r1["lora"].keys() and any("pama_gates" in n for n in r0["lora"])
    for name in r0["lora"]:
        assert torch.equal(r0["lora"][name], r1["lora"][name]), name
    assert any(v.abs().sum() > 0 for n, v in r0["lora"].items() if "lora_B" in n)  # training moved the adapter
    saved = Path(run["adapter_path"])
    assert (saved / "preference_gates.safetensors").is_file() and (saved / "conditioning.json").is_file()
