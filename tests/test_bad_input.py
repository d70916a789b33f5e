"""Bad input, table-driven: config files, CLI flags, form values, objective specs, prompt files, models, adapter
paths and files, databases. Each case must give a clear message (the CLI: exit code 2 and one `error: ...` line on
stderr, no traceback) and leave the store exactly as it was."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from pama import paths
from pama.config import ConfigError

TINY = ["--model", "tiny-random", "--objectives", "sentiment,conciseness", "--steps", "1", "--batch-size", "2",
        "--samples-per-prompt", "1", "--max-new-tokens", "4", "--threads", "1", "--quiet"]


@pytest.fixture
def seeded(store):
    """A store holding one finished run with metrics, so that 'unchanged' is not trivially an empty store."""
    rid = store.create_run(name="kept", method="pama", model="tiny-random", config={"steps": 2},
                           objectives=[{"name": "sentiment", "lower": -1, "upper": 1}], total_steps=2)
    store.set_status(rid, "running")
    for step in (1, 2):
        store.log_metrics(rid, step, {"kl": 0.1 * step, "loss/policy": 0.5})
    store.set_status(rid, "finished")
    return store


def snapshot(store) -> dict:
    runs_dir = paths.runs_dir()
    return {"runs": store.list_runs(), "counts": store.counts(), "metrics": store.count_metrics(),
            "files": sorted(str(p.relative_to(runs_dir)) for p in runs_dir.rglob("*")) if runs_dir.exists() else []}


def run_cli(argv, capsys) -> tuple[int, list[str]]:
    from pama.cli import main

    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse: usage line + "error: ..." line, exit 2
        rc = exc.code
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and not ln.startswith("warning: ")]
    return rc, err


def assert_cli_refuses(argv, fragment, capsys, store):
    before = snapshot(store)
    rc, err = run_cli(argv, capsys)
    assert rc == 2, (rc, err)
    text = "\n".join(err)
    assert "Traceback" not in text
    if err and err[0].startswith("usage:"):
        assert err[-1].split(": ", 1)[-1].startswith("error:") or "error:" in err[-1]
    else:
        assert len(err) == 1 and err[0].startswith("error: "), err
    assert fragment.lower() in text.lower(), text
    assert snapshot(store) == before


# ------------------------------------------------------------------------------------------------ config files

YAML_CASES = [
    ("unclosed_list", "steps: [1, 2\n", "not valid YAML (line"),
    ("tab_indent", "model: tiny-random\n\tsteps: 5\n", "not valid YAML"),
    ("python_tag", "!!python/object/apply:os.system ['echo pwned']\n", "not valid YAML"),
    ("top_level_list", "- steps\n- 5\n", "must hold a mapping"),
    ("scalar_document", "just text\n", "must hold a mapping"),
    ("unknown_field", "model: tiny-random\nstepz: 5\n", "unknown field(s) stepz"),
    ("int_as_text", "steps: abc\n", "steps"),
    ("int_as_float", "steps: 1.5\n", "expected an integer"),
    ("int_as_null", "steps: null\n", "steps"),
    ("bool_as_text", "whiten_advantages: maybe\n", "expected true or false"),
    ("noon_as_text", "model: tiny-random\nnoon: maybe\n", "noon must be auto, true or false"),
    ("list_as_mapping", "objectives: {a: 1}\n", "expected a list"),
    ("float_in_list_bad", "preference: [0.5, abc]\n", "preference"),
    ("text_as_list", "name: [1, 2]\n", "expected text"),
    ("nan_learning_rate", "model: tiny-random\nlearning_rate: .nan\n", "learning_rate"),
    ("inf_kl_coef", "model: tiny-random\nkl_coef: .inf\n", "kl_coef must be a finite number"),
    ("several_errors", "model: tiny-random\nanchor: 2\nsteps: -1\n", "anchor must lie in [0, 1], not 2.0; steps must"),
    ("inf_preference", "model: tiny-random\nobjectives: [sentiment, conciseness]\npreference: [.inf, 1]\n",
     "finite and non-negative"),
    ("huge_seed", "model: tiny-random\nseed: 99999999999999\n", "seed must lie in"),
]


@pytest.mark.parametrize("name, text, fragment", YAML_CASES, ids=[c[0] for c in YAML_CASES])
def test_bad_config_file(name, text, fragment, seeded, tmp_path, capsys):
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(text)
    assert_cli_refuses(["train", "--config", str(cfg), "--quiet"], fragment, capsys, seeded)


@pytest.mark.parametrize("kind", ["binary", "directory", "missing"])
def test_unreadable_config_file(kind, seeded, tmp_path, capsys):
    path = tmp_path / "cfg.yaml"
    if kind == "binary":
        path.write_bytes(b"\xff\xfe\x00\x81 steps")
    elif kind == "directory":
        path.mkdir()
    fragment = {"binary": "not a text file", "directory": "cannot read config file", "missing": "does not exist"}
    assert_cli_refuses(["train", "--config", str(path)], fragment[kind], capsys, seeded)


# ------------------------------------------------------------------------------------------------ CLI flags

FLAG_CASES = [
    ("steps_text", ["--steps", "abc"], "steps"),
    ("steps_zero", ["--steps", "0"], "steps must be a positive integer"),
    ("preference_length", ["--preference", "0.2,0.3,0.5"], "preference has 3 entries"),
    ("preference_negative", ["--preference=-1,2"], "non-negative"),
    ("preference_dash_value", ["--preference", "-1,2"], "expected one argument"),  # argparse: use --preference=-1,2
    ("preference_text", ["--preference", "0.5,x"], "preference"),
    ("method", ["--method", "ppo"], "method must be one of"),
    ("anchor_nan", ["--anchor", "nan"], "anchor"),
    ("objective_typo", ["--objectives", "sentimnet"], "did you mean 'sentiment'"),
    ("objective_repeated", ["--objectives", "sentiment,sentiment"], "repeated"),
    ("objective_bad_param", ["--objectives", "sentiment:foo=1"], "unknown parameter(s) foo"),
    ("objective_py_missing", ["--objectives", "py:no_such_module_xyz:f"], "cannot import"),
    ("mini_batches", ["--batch-size", "3", "--mini-batches", "2"], "divisible"),
    ("device", ["--device", "tpu"], "device must be"),
    ("negative_seed", ["--seed", "-3"], "seed must lie in"),
    ("no_target_modules", ["--target-modules", ""], "target_modules must name"),
    ("long_name", ["--name", "x" * 300], "longer than 200"),
    ("bool_flag", ["--whiten-advantages", "perhaps"], "expected true or false"),
    ("noon_flag", ["--noon", "perhaps"], "noon must be auto, true or false"),
    ("missing_prompt_file", ["--prompts", "/nonexistent/prompts.jsonl"], "prompt file not found"),
    ("unknown_model", ["--model", "/nonexistent/model/folder"], "Cannot load model"),
    ("unknown_flag", ["--bogus", "1"], "unrecognized arguments"),
    ("bad_db_url", ["--db", "notaurl"], "Cannot use the database URL"),
]


@pytest.mark.parametrize("name, flags, fragment", FLAG_CASES, ids=[c[0] for c in FLAG_CASES])
def test_bad_cli_flags(name, flags, fragment, seeded, capsys):
    assert_cli_refuses(["train", *TINY, *flags], fragment, capsys, seeded)


def test_bad_resume_requests(seeded, capsys):
    rid = seeded.list_runs()[0]["id"]
    assert_cli_refuses(["train", "--resume", "rnosuchrun", "--quiet"], "No run with id 'rnosuchrun'", capsys, seeded)
    assert_cli_refuses(["train", "--resume", rid, "--steps", "abc"], "--steps must be an integer", capsys, seeded)
    assert_cli_refuses(["train", "--resume", rid, "--steps", "-2"], "steps must be a positive integer", capsys,
                       seeded)


# ------------------------------------------------------------------------------------------------ form values

FORM = dict(name="", model="tiny-random", objectives=["sentiment", "conciseness"], method="pama", preference="",
            anchor=0.5, steps=10, batch_size=8, max_new_tokens=48, lora_r=8, lora_alpha=16, learning_rate=1e-4)

FORM_CASES = [
    ("preference_text", dict(preference="0.7, abc"), "is not a number"),
    ("preference_short", dict(preference="0.7"), "preference has 1 entries"),
    ("preference_nan", dict(preference="nan, 1"), "not a finite number"),
    ("python_objective", dict(objectives=["py:os:system"]), "accepted only from config files"),
    ("no_objectives", dict(objectives=[]), "at least one objective"),
    ("zero_steps", dict(steps=0), "steps must be a positive integer"),
    ("text_steps", dict(steps="ten"), "steps"),
    ("zero_lr", dict(learning_rate=0.0), "learning_rate"),
    ("zero_rank", dict(lora_r=0), "lora_r must be a positive integer"),
    ("anchor_inf", dict(anchor=float("inf")), "anchor"),
    ("nul_in_name", dict(name="a\x00b"), "NUL"),
    ("unknown_field", dict(bogus=1), "unknown field(s) bogus"),
    ("sweep_zero_points", dict(points=0, sweep=True), "points must be a positive integer"),
    ("sweep_zero_eval", dict(eval_samples=0, sweep=True), "eval_samples must be a positive integer"),
]


@pytest.mark.parametrize("name, change, fragment", FORM_CASES, ids=[c[0] for c in FORM_CASES])
def test_bad_form_values_are_refused_before_anything_starts(name, change, fragment, seeded):
    from pama.app import forms, settings

    change = dict(change)
    sweep = change.pop("sweep", False)
    form = {**FORM, **change}
    before = snapshot(seeded)
    with pytest.raises((ConfigError, settings.UIError, ValueError), match=None) as info:
        forms.build_train_config(form, sweep=sweep)
    assert fragment.lower() in str(info.value).lower()
    assert snapshot(seeded) == before


@pytest.mark.parametrize("fields, fragment", [
    (dict(steps="5"), "steps must be of type int"),
    (dict(objectives="sentiment"), "objectives must be of type"),
    (dict(whiten_advantages="yes"), "whiten_advantages must be of type bool"),
    (dict(noon="sometimes"), "noon must be auto, true or false"),
    (dict(kl_coef=float("nan")), "kl_coef must be a finite number"),
], ids=["steps_str", "objectives_str", "bool_str", "noon_str", "kl_nan"])
def test_config_built_in_python_with_wrong_types(fields, fragment):
    from pama.config import TrainConfig

    with pytest.raises(ConfigError, match=fragment):
        TrainConfig(model="tiny-random", **fields).validate(allow_python=False)


def test_background_job_with_bad_config_starts_nothing(seeded):
    from pama import jobs

    before = snapshot(seeded)
    with pytest.raises(jobs.JobError, match="steps must be a positive integer"):
        jobs.start_train({"model": "tiny-random", "steps": 0, "threads": 1}, store=seeded, timeout_s=120)
    assert snapshot(seeded) == before


# ------------------------------------------------------------------------------------------------ objective specs

OBJECTIVE_CASES = [
    ("sentimnet", "did you mean 'sentiment'"),
    ("", "non-empty"),
    ("length:target=abc", "unknown parameter(s) target"),
    ("length:lo=2,hi=1", "lo < hi"),
    ("conciseness:lower=1,upper=0", "lower < upper"),
    ("safety::", "key=value"),
    ("hf:", "expected hf:"),
    ("py:", "expected py:"),
    ("py:os", "expected py:"),
    ("hf:/nonexistent/reward/model", "cannot load"),
]


@pytest.mark.parametrize("spec, fragment", OBJECTIVE_CASES, ids=[c[0] or "empty" for c in OBJECTIVE_CASES])
def test_bad_objective_spec(spec, fragment):
    from pama import objectives

    with pytest.raises(objectives.ObjectiveError) as info:
        objectives.get(spec)
    assert fragment.lower() in str(info.value).lower()


# ------------------------------------------------------------------------------------------------ prompt files

PROMPT_CASES = [
    ("empty.txt", b"", "no prompts found"),
    ("blank.txt", b"\n   \n\n", "no prompts found"),
    ("bad.jsonl", b'{"prompt": "a"}\n{not json\n', "malformed JSON on line 2"),
    ("object.json", b'{"prompt": "x"}', "expected a JSON list"),
    ("numbers.json", b"[1, 2]", "expected a string or an object"),
    ("int_prompt.jsonl", b'{"prompt": 5}\n', "expected text"),
    ("nocolumn.csv", b"a,b\n1,2\n", "no 'prompt' or 'text' column"),
    ("latin1.txt", b"caf\xe9\n\xff\xfe", "not UTF-8"),
    ("prompts.docx", b"hello", "unknown prompt file extension"),
    (None, "missing.jsonl", "prompt file not found"),
    (None, "builtin:nope", "unknown built-in prompt set"),
    (None, "hf:/nonexistent/dataset", "not found"),
    (None, "   ", "empty prompt source"),
]


@pytest.mark.parametrize("name, content, fragment", PROMPT_CASES,
                         ids=[c[0] or str(c[1]).strip() or "blank" for c in PROMPT_CASES])
def test_bad_prompt_source(name, content, fragment, tmp_path):
    from pama.prompts import PromptError, load_prompts

    if name is None:
        source = str(tmp_path / content) if content.endswith(".jsonl") else content
    else:
        (tmp_path / name).write_bytes(content)
        source = str(tmp_path / name)
    with pytest.raises(PromptError) as info:
        load_prompts(source)
    assert fragment.lower() in str(info.value).lower()


def test_bad_prompt_file_through_the_cli_creates_no_run(seeded, tmp_path, capsys):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"prompt": \n')
    assert_cli_refuses(["train", *TINY, "--prompts", str(bad)], "malformed JSON", capsys, seeded)


# ------------------------------------------------------------------------------------------------ models

@pytest.mark.parametrize("spec", ["/nonexistent/model/folder", "missing-file.gguf", "EMPTY_DIR"])
def test_unknown_model(spec, tmp_path):
    from pama import models

    if spec == "EMPTY_DIR":
        spec = str(tmp_path)
    with pytest.raises(models.ModelNotFoundError, match="Cannot load model"):
        models.load(spec)


# ------------------------------------------------------------------------------------------------ adapters

@pytest.fixture
def adapter_dir(pama_home, tiny):
    """A valid LoRA adapter folder under the checkpoints root (saved from the tiny model, no training)."""
    import copy

    from peft import LoraConfig, get_peft_model

    model, _ = tiny
    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=2, target_modules=["q_proj", "v_proj"],
                                                                 task_type="CAUSAL_LM"))
    out = pama_home / "runs" / "rgood" / "step-000001" / "adapter"
    peft_model.save_pretrained(out)
    return out


def _damage(adapter: Path, how: str, tmp_path: Path, pama_home: Path):
    weights = adapter / "adapter_model.safetensors"
    if how == "outside_root":
        shutil.copytree(adapter, tmp_path / "elsewhere")
        return tmp_path / "elsewhere"
    if how == "system_folder":
        return Path("/etc")
    if how == "dotdot_escape":
        shutil.copytree(adapter, tmp_path / "escaped")
        return pama_home / "runs" / ".." / ".." / "escaped"
    if how == "symlink_out":
        shutil.copytree(adapter, tmp_path / "target")
        link = pama_home / "runs" / "rlink"
        link.symlink_to(tmp_path / "target", target_is_directory=True)
        return link
    if how == "missing_folder":
        return pama_home / "runs" / "rnone" / "adapter"
    if how == "a_file":
        return weights
    if how == "no_weights":
        weights.unlink()
    elif how == "config_garbage":
        (adapter / "adapter_config.json").write_text("{not json")
    elif how == "config_not_lora":
        cfg = json.loads((adapter / "adapter_config.json").read_text())
        cfg["peft_type"] = "PREFIX_TUNING"
        (adapter / "adapter_config.json").write_text(json.dumps(cfg))
    elif how == "truncated":
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
    elif how == "zero_bytes":
        weights.write_bytes(b"")
    elif how == "garbage":
        weights.write_bytes(os.urandom(4096))
    elif how == "empty_path":
        return ""
    return adapter


ADAPTER_CASES = [
    ("outside_root", "refusing to load"), ("system_folder", "refusing to load"), ("dotdot_escape", "refusing to load"),
    ("symlink_out", "refusing to load"), ("missing_folder", "does not exist"), ("a_file", "is not a folder"),
    ("no_weights", "lacks adapter_model.safetensors"), ("config_garbage", "is corrupt"),
    ("config_not_lora", "only LoRA"), ("truncated", "corrupt or truncated"), ("zero_bytes", "corrupt or truncated"),
    ("garbage", "corrupt or truncated"), ("empty_path", "no adapter path"),
]


@pytest.mark.parametrize("how, fragment", ADAPTER_CASES, ids=[c[0] for c in ADAPTER_CASES])
def test_bad_adapter_path_or_file(how, fragment, adapter_dir, tmp_path, pama_home):
    from pama import adapters

    assert adapters.check_adapter_path(adapter_dir) == adapter_dir.resolve()
    path = _damage(adapter_dir, how, tmp_path, pama_home)
    with pytest.raises(adapters.AdapterError) as info:
        adapters.check_adapter_path(path, name="a")
    assert fragment.lower() in str(info.value).lower()


def test_bad_adapter_is_refused_before_the_model_is_touched(adapter_dir, tiny):
    import copy

    from pama import adapters

    model = copy.deepcopy(tiny[0])
    (adapter_dir / "adapter_model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(adapters.AdapterError, match="corrupt or truncated"):
        adapters.load_adapters(model, {"a": adapter_dir})
    with pytest.raises(adapters.AdapterError, match="without dots"):
        adapters.load_adapters(model, {"a.b": adapter_dir})
    assert not hasattr(model, "peft_config")


# ------------------------------------------------------------------------------------------------ databases

def _rows(db: Path) -> tuple:
    con = sqlite3.connect(db)
    try:
        return tuple(con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("runs", "metrics"))
    finally:
        con.close()


def test_read_only_database_refuses_writes_with_a_clear_message(seeded, capsys):
    """A read-only SQLite URI (chmod does not stop root, the URI does): reads work, writes are a StoreError."""
    from pama.store import Store, StoreError

    db = Path(seeded.url.removeprefix("sqlite:///"))
    seeded.close()
    before = _rows(db)
    ro_url = f"sqlite:///file:{db}?mode=ro&uri=true"
    ro = Store(ro_url)
    assert len(ro.list_runs()) == 1
    rid = ro.list_runs()[0]["id"]
    for write in (lambda: ro.create_run(name="x", method="pama", model="m", config={}, objectives=[]),
                  lambda: ro.log_metrics(rid, 3, {"kl": 1.0}), lambda: ro.set_status(rid, "failed"),
                  lambda: ro.update_run(rid, name="renamed"), lambda: ro.delete_run(rid)):
        with pytest.raises(StoreError, match="readonly database.*nothing was changed"):
            write()
    ro.close()
    rc, err = run_cli(["train", *TINY, "--db", ro_url], capsys)
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and "readonly" in err[0]
    assert _rows(db) == before
    assert not Path("file:").exists()  # a URI is not a path to create


def test_chmod_read_only_database(seeded, capsys):
    from pama.store import Store, StoreError

    if os.geteuid() == 0:
        pytest.skip("running as root: chmod does not stop root from writing (the read-only URI case covers it)")
    db = Path(seeded.url.removeprefix("sqlite:///"))
    seeded.close()
    copy = db.with_name("ro.db")
    shutil.copy(db, copy)
    copy.chmod(0o444)
    db.parent.chmod(0o555)
    try:
        with pytest.raises(StoreError):
            Store(f"sqlite:///{copy}").create_run(name="x", method="pama", model="m", config={}, objectives=[])
    finally:
        db.parent.chmod(0o755)


@pytest.mark.parametrize("kind, fragment", [
    ("garbage_file", "file is not a database"),
    ("parent_is_a_file", "Cannot use the database URL"),
    ("unknown_dialect", "Cannot use the database URL"),
])
def test_unusable_database_through_the_cli(kind, fragment, tmp_path, capsys, pama_home):
    if kind == "garbage_file":
        (tmp_path / "x.db").write_bytes(b"this is not sqlite" * 100)
        url = f"sqlite:///{tmp_path / 'x.db'}"
    elif kind == "parent_is_a_file":
        (tmp_path / "file").write_text("x")
        url = f"sqlite:///{tmp_path / 'file' / 'x.db'}"
    else:
        url = "nosuchdb://host/db"
    rc, err = run_cli(["runs", "--db", url], capsys)
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err
    if kind == "garbage_file":
        assert (tmp_path / "x.db").read_bytes() == b"this is not sqlite" * 100


def test_missing_store_is_not_created_when_only_reading(tmp_path, capsys):
    from pama.store import Store, StoreError

    with pytest.raises(StoreError, match="pama db init"):
        Store(f"sqlite:///{tmp_path / 'none.db'}", create=False)
    assert not (tmp_path / "none.db").exists()


def test_old_schema_is_refused_by_the_cli_and_left_untouched(tmp_path, capsys):
    from alembic import command

    from pama.store import alembic_config

    db = tmp_path / "old.db"
    command.upgrade(alembic_config(f"sqlite:///{db}"), "0001")
    before = db.read_bytes()
    rc, err = run_cli(["runs", "--db", f"sqlite:///{db}"], capsys)
    assert rc == 2 and len(err) == 1 and "schema version 0001" in err[0] and "python -m pama db upgrade" in err[0]
    rc, err = run_cli(["train", *TINY, "--db", f"sqlite:///{db}"], capsys)
    assert rc == 2 and "python -m pama db upgrade" in err[0]
    con = sqlite3.connect(db)
    assert con.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "0001"
    assert con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
    con.close()
    del before


def test_newer_schema_says_to_upgrade_pama_not_the_database(store):
    from pama.store import SchemaOutOfDateError, Store

    with store.engine.begin() as c:
        c.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    with pytest.raises(SchemaOutOfDateError, match="newer release of pama"):
        Store(store.url)


def test_database_password_never_appears_in_messages():
    from pama.store import Store, StoreError

    with pytest.raises(StoreError) as info:
        Store("postgresql+psycopg://nobody:s3cr3t-pw@127.0.0.1:1/nodb")
    assert "s3cr3t-pw" not in str(info.value) and "Cannot open the database" in str(info.value)


def test_garbage_pama_db_url_in_the_environment(monkeypatch, capsys, pama_home):
    monkeypatch.setenv("PAMA_DB_URL", "::::not a url::::")
    rc, err = run_cli(["runs"], capsys)
    assert rc == 2 and len(err) == 1 and "Cannot use the database URL" in err[0]
