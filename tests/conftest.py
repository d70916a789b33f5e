"""Shared fixtures: an isolated PAMA_HOME and store per test, and a tiny random model built in-process."""
from __future__ import annotations

import os
import uuid

import pama  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (pyproject's addopts): one test process per core, at most 4. Most tests drive the tiny model, whose
    small ops keep one core busy, or wait on other processes (the app, workers, Chromium): two processes on 2 cores
    ran the suite's app and job tests 1.6x faster and the sweep tests 1.3x (docs/deployment.md). Each process still
    runs torch at 2 threads, as the embedded model's integration test needs (below). More than 4 buys little and
    multiplies the models and browsers in memory. PYTEST_XDIST_AUTO_NUM_WORKERS or `-n N` overrides it; `-n 0` runs
    in one process."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    return max(1, min(4, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _torch_threads():
    """A config with ``threads: 1`` sets torch's thread count for the whole process (the trainer runs in-process in
    most tests); restore it, or later tests run at another thread count: the embedded model's 12-step integration
    run lowers its preferred reward at 1 thread (measured), so its outcome depended on which tests ran before it."""
    n = torch.get_num_threads()
    yield
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


@pytest.fixture
def pama_home(tmp_path, monkeypatch):
    """Each test gets its own checkpoints root and SQLite store; the base-model cache stays shared."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("PAMA_HOME", str(home))
    monkeypatch.delenv("PAMA_DB_URL", raising=False)
    monkeypatch.setenv("PAMA_WORKER_IDLE_S", "10")  # the local queue worker a test starts exits soon after
    return home


@pytest.fixture
def store(pama_home):
    from pama.store import Store

    s = Store()
    yield s
    s.close()


@pytest.fixture
def pg_url():
    """A scratch database on the PostgreSQL server that .ci/run starts (PAMA_TEST_PG_URL), dropped afterwards."""
    base = os.environ.get("PAMA_TEST_PG_URL")
    if not base:
        pytest.skip("PAMA_TEST_PG_URL not set (.ci/run starts a PostgreSQL server and sets it)")
    import sqlalchemy as sa

    name = f"pama_test_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f"CREATE DATABASE {name}")
    yield base.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as c:
        c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request, pama_home):
    """The same store tests on SQLite and, where CI started one (PAMA_TEST_PG_URL), on a real PostgreSQL server."""
    from pama.store import Store

    s = Store() if request.param == "sqlite" else Store(request.getfixturevalue("pg_url"))
    yield s
    s.close()


@pytest.fixture(scope="session")
def tiny():
    from pama import models

    return models.load(models.TINY_MODEL, seed=0)


@pytest.fixture
def random_lora(tiny):
    """A factory: the tiny model under a LoRA adapter (r=4 on q/v) with random non-zero A and B, in eval mode."""
    import copy

    from peft import LoraConfig, get_peft_model

    def make(*, seed: int, use_dora: bool = False):
        model = get_peft_model(copy.deepcopy(tiny[0]), LoraConfig(
            r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, use_dora=use_dora,
            task_type="CAUSAL_LM"))
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_A" in n or "lora_B" in n:  # (DoRA's magnitudes keep their initial values)
                    p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        return model.eval()

    return make


# `make test-fast` runs `-m "not slow"`: these modules drive the real model, a browser, several processes, or train
# and evaluate end to end (sweeps, the app's pages over trained adapters, benchmarks' scripts); tests marked
# integration or browser anywhere are slow too. `make test` (CI) runs everything and prints the 15 slowest tests.
SLOW_MODULES = {"test_integration", "test_browser", "test_multiprocess", "test_benchmarks", "test_reliability",
                "test_docker", "test_demo", "test_learnability", "test_app", "test_app_conditioned", "test_sweep",
                "test_queue", "test_trl_grpo"}
# single tests of the fast modules that start and wait for other processes (background jobs, `python -m pama db`)
SLOW_TESTS = {"test_start_train_runs_in_the_background_to_the_end", "test_cancel_stops_a_running_job",
              "test_migration_0005_keeps_the_demo_front_and_admits_conditioned_points",
              "test_a_job_that_dies_before_running_is_reaped_with_its_log",
              "test_migration_from_0002_keeps_the_demo_front_and_adds_votes",
              "test_exports_and_cli_carry_votes_and_scores",
              "test_train_form_reports_to_tensorboard_and_draws_the_live_front",
              "test_a_sweep_stops_at_the_round_its_ends_came_apart_and_evaluates_every_point_there",
              "test_relevance_embedder_is_sentence_transformers_offline_and_matches_mean_pooling",
              "test_embedded_model_loads_offline_and_writes_english",
              "test_a_conditioned_sweep_trains_one_run_and_stores_eleven_conditioned_points",
              "test_a_conditioned_run_resumes_exactly_with_its_gates", "test_resume_is_reproducible"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if getattr(item, "module", None) else ""
        name = getattr(item, "originalname", None) or getattr(item, "name", "")
        if module in SLOW_MODULES or name in SLOW_TESTS or item.get_closest_marker("integration") \
                or item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.slow)
