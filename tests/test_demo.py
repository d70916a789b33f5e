"""The shipped demo folders (pama.demo): a conditioned sweep exported beside a plain one (adapter files, gates,
bfloat16, conditioned points), both imported into a fresh store (idempotent, demo/conditioned optional), the imported
conditioned run loaded by the app's path (conditioning.load_conditioned) and computing what the original does, and
the shipped demo/conditioned folder, once it exists, meeting the trade-off bar. Tiny model, in-process."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from scipy.stats import spearmanr

from pama import conditioning as cond
from pama import demo, models, paths
from test_learnability import assert_trade_off_bar

OBJECTIVES = ["sentiment", "conciseness"]
TINY = dict(model="tiny-random", objectives=OBJECTIVES, steps=2, batch_size=4, samples_per_prompt=2,
            max_new_tokens=6, save_every=1, learning_rate=1e-2, seed=0, threads=1, target_modules=["q_proj", "v_proj"],
            eval_samples=2, eval_max_new_tokens=3)
PROMPTS = ["Describe a rainy day.", "Name three fruits."]
ENDS = ([1.0, 0.0], [0.0, 1.0])


def test_the_demo_names_the_conditioned_files_as_conditioning_does():
    """pama.demo names a conditioned adapter's files itself (it must not import torch); they must agree."""
    assert demo.CONDITIONING_FILES == (cond.CONFIG_FILE, cond.GATES_FILE)
    assert [d.name for d in demo.shipped_dirs()] == ["front", "conditioned"]
    assert all(d.parent == paths.REPO / "demo" for d in demo.shipped_dirs())


def _sweeps(store) -> tuple[str, str]:
    """A tiny plain sweep (2 adapters) and a tiny conditioned sweep (1 run, 11 conditioned points)."""
    from pama.config import SweepConfig
    from pama.sweep import run_sweep

    plain = run_sweep(SweepConfig(**dict(TINY, steps=1, points=2)), store, progress=False)
    conditioned = run_sweep(SweepConfig(**dict(TINY, conditioned=True)), store, progress=False)
    return plain, conditioned


def _logits(model, tok, p) -> torch.Tensor:
    enc = models.encode(tok, PROMPTS)
    with torch.no_grad(), cond.preference(model, p):
        return model(**enc).logits


def test_a_conditioned_sweep_exports_and_imports_beside_a_plain_one_and_generates_as_before(store, tmp_path):
    from safetensors import safe_open

    from pama import adapters as adp
    from pama.store import Store

    plain, conditioned = _sweeps(store)
    (run,) = store.list_runs(sweep_id=conditioned)
    out = paths.home() / "demo"            # adapters load only from under the checkpoints root or the demo folder
    demo.export_sweep(store, plain, out / "front", adapter_dtype="bfloat16")
    demo.export_sweep(store, conditioned, out / "conditioned", adapter_dtype="bfloat16")
    demo.export_sweep(store, conditioned, out / "conditioned-f32")

    # the export: the conditioned adapter's four files, the LoRA weights in bfloat16, the gates left in float32
    folder = out / "conditioned" / "adapters" / run["id"]
    assert sorted(f.name for f in folder.iterdir()) == sorted(demo.ADAPTER_FILES + demo.CONDITIONING_FILES)
    for name, dtype in (("adapter_model.safetensors", torch.bfloat16), (cond.GATES_FILE, torch.float32)):
        with safe_open(str(folder / name), framework="pt") as fh:
            assert {fh.get_tensor(k).dtype for k in fh.keys()} == {dtype}, name
    records = json.loads((out / "conditioned" / demo.RECORDS).read_text())
    assert records["runs"][0]["adapter_files"] == list(demo.ADAPTER_FILES + demo.CONDITIONING_FILES)
    assert "adapter_files" not in json.loads((out / "front" / demo.RECORDS).read_text())["runs"][0]  # plain: as before

    # the import into a fresh store: both folders, in order; a second import adds nothing
    fresh = Store(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        assert demo.import_if_empty(fresh, [out / "front", out / "conditioned"]) == [plain, conditioned]
        counts = fresh.counts()
        assert demo.import_if_empty(fresh, [out / "front", out / "conditioned"]) == []
        assert demo.import_demo(fresh, out / "conditioned") == conditioned          # a folder already in: kept as is
        assert fresh.counts() == counts == store.counts()
        for sid in (plain, conditioned):
            assert fresh.get_sweep(sid)["summary"] == store.get_sweep(sid)["summary"]
        original = {p["id"]: p for p in store.points(sweep_id=conditioned)}
        imported = fresh.points(sweep_id=conditioned)
        cpts = [p for p in imported if p["kind"] == "conditioned"]
        assert len(cpts) == 11 and sorted(p["kind"] for p in imported if p["kind"] != "conditioned") == ["base"]
        for p in imported:
            assert p["preference"] == original[p["id"]]["preference"] and p["values"] == original[p["id"]]["values"]
            assert p["run_id"] == original[p["id"]]["run_id"] and fresh.generations(p["id"])
        assert sorted(round(p["preference"][0], 2) for p in cpts) == [round(i / 10, 2) for i in range(11)]
        assert {p["run_id"] for p in cpts} == {run["id"]}
        imp_run = fresh.get_run(run["id"])
        assert imp_run["config"]["conditioned"] and imp_run["status"] == "finished"
        assert Path(imp_run["adapter_path"]) == folder.resolve()      # the app finds the adapter in the demo folder
        assert adp.check_adapter_path(imp_run["adapter_path"]) == folder.resolve()

        # the app's path: load_conditioned(run id, store=...) on the imported run computes what the original does
        # (bfloat16 LoRA weights: logits within rounding), at both ends; the ends differ far more than that
        m0, tok, objs = cond.load_conditioned(run["id"], store=store)
        m1, _, objs1 = cond.load_conditioned(run["id"], store=fresh)
        assert objs == objs1 == OBJECTIVES
        ref = [_logits(m0, tok, p) for p in ENDS]
        got = [_logits(m1, tok, p) for p in ENDS]
        spread = (ref[0] - ref[1]).abs().max().item()
        for a, b in zip(ref, got):
            err = (a - b).abs().max().item()
            assert err < 1e-2 and err < 0.05 * spread, (err, spread)

        # an export left in float32 is exact: the same greedy and the same seeded text at two preferences
        exact = Store(f"sqlite:///{tmp_path / 'exact.db'}")
        try:
            assert demo.import_if_empty(exact, out / "conditioned-f32") == [conditioned]
            assert Path(exact.get_run(run["id"])["adapter_path"]).parent.parent == (out / "conditioned-f32").resolve()
            m2, _, _ = cond.load_conditioned(run["id"], store=exact)
        finally:
            exact.close()
        seeded = {}
        for p in ([0.8, 0.2], [0.2, 0.8]):
            for kw in (dict(temperature=0.0), dict(temperature=0.7, seed=3)):
                text = cond.generate_at(m2, tok, PROMPTS, p, max_new_tokens=8, **kw)
                assert text == cond.generate_at(m0, tok, PROMPTS, p, max_new_tokens=8, **kw), (p, kw)
                if kw.get("seed") is not None:
                    seeded[tuple(p)] = text
        # (the tiny model's greedy answer is empty: it ends at once; the seeded text is there, and moves with p)
        assert all(all(t.strip() for t in texts) for texts in seeded.values())
        assert seeded[(0.8, 0.2)] != seeded[(0.2, 0.8)], seeded
    finally:
        fresh.close()


def test_a_missing_or_damaged_conditioned_folder_leaves_the_front_importable(store, tmp_path, caplog):
    """demo/conditioned need not exist; a conditioned folder that lost its gates is refused with a warning and the
    other folders are imported; when every folder is damaged the error names it."""
    from pama.config import SweepConfig
    from pama.store import Store
    from pama.sweep import run_sweep

    sid = run_sweep(SweepConfig(**dict(TINY, conditioned=True, steps=1)), store, progress=False)
    out = paths.home() / "demo"
    demo.export_sweep(store, sid, out / "conditioned")
    plain = run_sweep(SweepConfig(**dict(TINY, steps=1, points=2)), store, progress=False)
    demo.export_sweep(store, plain, out / "front")
    stores = [Store(f"sqlite:///{tmp_path / f'{i}.db'}") for i in range(4)]
    try:
        assert demo.import_if_empty(stores[0], [out / "absent", out / "conditioned"]) == [sid]
        assert demo.import_if_empty(stores[1], [out / "absent"]) == []
        (gates,) = out.glob(f"conditioned/adapters/*/{cond.GATES_FILE}")
        gates.unlink()
        with pytest.raises(ValueError, match=cond.GATES_FILE):
            demo.import_if_empty(stores[2], [out / "conditioned"])
        assert stores[2].counts()["sweeps"] == 0                       # checked before anything was written
        assert demo.import_if_empty(stores[3], [out / "front", out / "conditioned"]) == [plain]
        assert "not imported" in caplog.text and stores[3].get_sweep(sid) is None
    finally:
        for s in stores:
            s.close()


# demo/conditioned (issue 23; docs/learnability.md section 22; demo/conditioned/COMMAND.md): the front's sentiment vs
# relevance on brief complaints, relevance guarded against prompt echo. Its sentiment ends are apart, raw and length-
# controlled; its relevance ends are in order but NOT apart (1.65 half-widths): the objectives whose ends are apart.
CONDITIONED_APART = {"sentiment"}


def newest_shipped_demo() -> dict:
    """The records (store.json) of the newest shipped demo: the sweep the front page and the blind vote open on."""
    return max((json.loads((d / demo.RECORDS).read_text()) for d in demo.shipped_dirs() if demo.available(d)),
               key=lambda data: data["sweep"]["created_at"])


def _demo_config(folder: str) -> dict:
    import argparse

    from pama.config import SweepConfig, add_dataclass_arguments, build

    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, SweepConfig)
    return build(SweepConfig, parser.parse_args([]), demo.DEMO_ROOT / folder / "sweep.yaml").validate().to_dict()


def test_the_conditioned_demo_sweep_yaml_is_the_fronts_settings_plus_conditioning():
    """demo/conditioned's recipe is demo/front's but for conditioning, its steps, a U-shaped preference draw and
    relevance guarded against prompt echo; and each folder's recipe is the one its records were made with."""
    cfg, front = _demo_config("conditioned"), _demo_config("front")
    assert cfg["conditioned"] and cfg["conditioning"] == "svd" and cfg["steps"] == 128 and cfg["save_every"] == 16
    assert cfg["preference_alpha"] == 0.3
    assert cfg["objectives"] == [front["objectives"][0], front["objectives"][1] + ":echo=6"]
    differ = {k for k in cfg if cfg[k] != front[k]}
    # and the KL settings: demo/conditioned was trained with the adaptive β (target 4 nats) that demo/front dropped
    # for a fixed β (docs/learnability.md section 24), and with the default threads
    assert differ == {"conditioned", "steps", "save_every", "points", "objectives", "preference_alpha", "kl_coef",
                      "target_kl", "threads"}, differ
    assert (cfg["kl_coef"], cfg["target_kl"]) == (0.1, 4.0)
    for folder, c in (("conditioned", cfg), ("front", front)):
        path = demo.DEMO_ROOT / folder
        if demo.available(path):
            sweep = json.loads((path / demo.RECORDS).read_text())["sweep"]
            assert sweep["objectives"] == c["objectives"], folder
            assert {k: sweep["config"][k] for k in ("steps", "preference_alpha", "seed", "prompts")} == \
                {k: c[k] for k in ("steps", "preference_alpha", "seed", "prompts")}, folder


def test_the_shipped_conditioned_demo_imports_and_meets_the_trade_off_bar(store):
    """The trade-offs issue's bar on demo/conditioned's records: >= 128 held-out prompts per point; every one of the
    11 points within 10 nats of the base and ending >= 80% of its answers on EOS; each objective's own end above its
    other end, raw and length-controlled, and at least the base model's mean on its own objective; the ends' 95%
    intervals apart (raw and length-controlled) for the objectives in CONDITIONED_APART, and stated as not apart for
    the others; p orders the points (Spearman's rho of p_1: sentiment >= 0.9; relevance <= -0.75, measured -0.80).
    And it imports beside demo/front with a loadable conditioned adapter."""
    from pama import adapters as adp

    if not demo.available(demo.CONDITIONED_DIR):
        pytest.skip("demo/conditioned/store.json is not shipped yet: train it with `python -m pama sweep "
                    "--conditioned --config demo/conditioned/sweep.yaml` and export it (demo/conditioned/COMMAND.md)")
    data = json.loads((demo.CONDITIONED_DIR / demo.RECORDS).read_text())
    objs = data["sweep"]["objectives"]
    points = data["points"]
    assert all(p["eval_config"]["n_prompts"] >= 128 for p in points)
    trained = [p for p in points if p["kind"] == "conditioned"]
    assert len(trained) == 11 and len({p["run_id"] for p in trained}) == 1
    ends = [p for p in trained if max(p["preference"]) == 1.0]
    assert_trade_off_bar(trained, objs, apart=CONDITIONED_APART)  # every point's KL and EOS; the ends' order
    base = next(p for p in points if p["kind"] == "base")
    for i, o in enumerate(objs):
        own = next(p for p in ends if p["preference"][i] == 1.0)
        assert own["values"][o]["mean"] >= base["values"][o]["mean"], (o, own["values"][o], base["values"][o])
    p1 = [p["preference"][0] for p in trained]
    assert spearmanr(p1, [p["values"][objs[0]]["mean"] for p in trained]).statistic >= 0.9
    assert spearmanr(p1, [p["values"][objs[1]]["mean"] for p in trained]).statistic <= -0.75

    ids = demo.import_if_empty(store)
    assert data["sweep"]["id"] in ids and len(ids) == sum(demo.available(d) for d in demo.shipped_dirs())
    assert len(store.points(sweep_id=data["sweep"]["id"], kind="conditioned")) == 11
    run_id = trained[0]["run_id"]
    folder = adp.run_adapters(store, [run_id])[run_id]
    assert Path(folder).resolve().parent.parent == demo.CONDITIONED_DIR.resolve()
    info = cond.read_conditioning(adp.check_adapter_path(folder))
    assert info and info["objectives"] == objs and info["form"] == "svd"
