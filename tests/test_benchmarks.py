"""The benchmark scripts run end to end on the tiny model and write what their docs say (tables, CSV rows).

Speed is never asserted here (that is what the benchmarks are for); this keeps the scripts from rotting."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, script: str, *args: str, model: str | None = "tiny-random") -> str:
    env = dict(os.environ, PAMA_BENCH_RESULTS=str(tmp_path), PAMA_HOME=str(tmp_path / "home"))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *(["--model", model] if model else []),
                           *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_bench_weights_times_pama_and_mgda_for_each_n(tmp_path):
    out = _run(tmp_path, "bench_weights.py", "--objectives", "2,3", "--repeats", "1", "--pama-repeats", "5",
               "--tokens", "8")
    rows = _rows(tmp_path / "weights-tiny-random.csv")
    assert [int(r["n"]) for r in rows] == [2, 3]
    for r in rows:  # MGDA's n backward passes cannot be cheaper than PAMA's elementwise combination
        assert float(r["mgda_ms"]) > float(r["pama_ms"]) > 0
    assert "| n |" in out and "command:" in out


def test_bench_embedder_times_both_embedders_and_checks_that_they_agree(tmp_path):
    out = _run(tmp_path, "bench_embedder.py", "--pairs", "4", "--rounds", "1", model=None)  # MiniLM, not a policy
    rows = _rows(tmp_path / "embedder.csv")
    assert [r["embedder"] for r in rows] == ["hand-rolled (AutoModel + mean pooling)", "sentence-transformers"]
    assert all(float(r["max_abs_cos_diff"]) <= 1e-4 and float(r["median_s"]) > 0 for r in rows)
    assert "command:" in out and "niceness of this process" in out


def test_bench_rollout_compares_every_variant(tmp_path):
    _run(tmp_path, "bench_rollout.py", "--rounds", "1", "--tokens", "4", "--batch", "3", "--bandwidth-mib", "64")
    rows = _rows(tmp_path / "rollout-tiny-random.csv")
    assert {r["variant"] for r in rows} == {"hf-generate", "ours", "ours-no-onednn", "ours-unmerged",
                                            "ours-no-shared-prefix", "ours-no-slab-cache", "ours-no-fused-mlp",
                                            "matmuls-only"}
    for r in rows:   # issue 24: the bandwidth bound measured in the same run, and each variant's fraction of it
        assert float(r["bw_wall_gbs"]) > 0 and float(r["bw_cpu_gbs"]) > 0
        assert float(r["of_bound_wall"]) == pytest.approx(float(r["bound_wall_s"]) / float(r["wall_s"]))
    md = (tmp_path / "rollout-tiny-random.md").read_text()
    assert "speed vs hf-generate" in md and "of bound (CPU)" in md and "Bound: " in md


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="/usr/bin/chromium is missing (apt-get install -y "
                    "chromium)")
def test_bench_pages_times_the_plot_and_the_text_of_every_page(tmp_path):
    """Issue 24: one cold and one warm load of every page on the demos (served like `make run`, tiny-random as the
    app's model): the pages with a chart report when it was drawn, the blind vote when its ballot's text appeared,
    pages without either report none, and no page raised."""
    pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    from test_demo import newest_shipped_demo

    newest = newest_shipped_demo()
    newest_is_conditioned = any(p["kind"] == "conditioned" for p in newest["points"])
    out = _run(tmp_path, "bench_pages.py", "--rounds", "1", "--timeout", "300")
    rows = _rows(tmp_path / "pages-tiny-random.csv")
    assert set(rows[0]) >= {"round", "load", "page", "plot_s", "text_s", "settled_s", "exceptions"}
    pages = ["Home", "Pareto front", "Compare", "Blind vote", "Train", "Runs"]
    assert [(r["load"], r["page"]) for r in rows] == [(load, p) for load in ("cold", "warm") for p in pages]
    by = {(r["load"], r["page"]): r for r in rows}
    for load in ("cold", "warm"):
        assert 0 < float(by[load, "Pareto front"]["plot_s"]) <= float(by[load, "Pareto front"]["settled_s"])
        assert float(by[load, "Runs"]["plot_s"]) > 0             # the newest run's reward curves
        assert float(by[load, "Blind vote"]["text_s"]) > 0       # the ballot's responses
        for page in ("Home", "Compare", "Train"):                # no chart, nothing generated on load
            assert by[load, page]["plot_s"] == by[load, page]["text_s"] == ""
        if newest_is_conditioned:   # the front page opens on it: its slider's generation ended, one way or the
            # other (the demo's adapter does not fit tiny-random)
            assert by[load, "Pareto front"]["text_s"] or int(by[load, "Pareto front"]["generation_errors"]) > 0
        else:                       # a plain front generates nothing until asked
            assert by[load, "Pareto front"]["text_s"] == "" and int(by[load, "Pareto front"]["generation_errors"]) == 0
    assert all(r["exceptions"] == "0" for r in rows)
    assert "command:" in out and "| page | plot s (cold) |" in out
    assert "| Blind vote |" in (tmp_path / "pages-tiny-random.md").read_text()


def test_bench_eval_times_the_old_and_new_conditioned_evaluation_and_checks_they_agree(tmp_path):
    """Issue 24: both ways evaluate the same 11 preferences at the same seeds; the script reports both times, their
    ratio, and per preference and objective whether the means agree (they do: the same draws per row)."""
    out = _run(tmp_path, "bench_eval.py", "--prompts", "5", "--tokens", "4", "--rounds", "1", "--batch", "2",
               "--rows", "4", "--threads", "1")
    assert "command:" in out and "- cpu:" in out
    rows = _rows(tmp_path / "eval-tiny-random.csv")
    assert {r["arm"] for r in rows if r["kind"] == "time"} == {"old", "new"}
    agree = [r for r in rows if r["kind"] == "agreement"]
    assert len(agree) == 11 * 2 and all(r["within"] == "True" for r in agree)
    assert "every mean inside the other's interval: yes" in out


def test_bench_step_runs_our_trainer_and_trl_round_robin(tmp_path):
    _run(tmp_path, "bench_step.py", "--methods", "pama,morlhf,trl-grpo,pama~glibc", "--rounds", "2", "--tokens",
         "4", "--tag", "smoke")
    steps = _rows(tmp_path / "step-tiny-random-smoke.csv")
    timed = [r for r in steps if r["timed"] == "True"]
    assert sorted(r["method"] for r in timed) == ["morlhf", "morlhf", "pama", "pama", "pama~glibc", "pama~glibc",
                                                  "trl-grpo", "trl-grpo"]
    assert [r["method"] for r in steps[:4]] == ["pama", "morlhf", "trl-grpo", "pama~glibc"]  # alternating, in order
    assert all(int(r["faults"]) >= 0 and float(r["sys_s"]) >= 0 for r in timed)  # the allocator's cost per step
    md = (tmp_path / "step-tiny-random-smoke.md").read_text()
    assert "speed vs trl-grpo within each round" in md and "- pama: median" in md
    assert "pama / morlhf seconds per step" in md


def test_bench_conditioned_compares_one_conditioned_adapter_with_a_sweep(tmp_path):
    out = _run(tmp_path, "bench_conditioned.py", "--minutes", "0.02", "--sweep-points", "2", "--eval-samples", "4",
               "--eval-max-new-tokens", "4", "--bootstrap", "20", "--set", "batch_size=4", "samples_per_prompt=2",
               "max_new_tokens=4", "threads=1")
    rows = _rows(tmp_path / "conditioned.csv")
    assert [r["arm"] for r in rows] == ["sweep ×2", "conditioned-svd", "conditioned-prefix"]
    assert [int(r["points"]) for r in rows] == [2, 11, 11]
    for r in rows:
        lo, hi = (float(x) for x in r["HV 95% CI"].strip("[]").split(","))
        assert lo <= float(r["HV"]) <= hi
    assert "Spearman p1~informativeness" in out and "command:" in out and "base model:" in out
    import json

    records = [json.loads(line) for line in (tmp_path / "conditioned.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records] == ["base", "sweep-point", "sweep-point", "conditioned", "conditioned"]
    # --resume: everything is there, nothing is trained again
    out = _run(tmp_path, "bench_conditioned.py", "--minutes", "0.02", "--sweep-points", "2", "--eval-samples", "4",
               "--eval-max-new-tokens", "4", "--bootstrap", "20", "--resume")
    assert "training minutes, then" not in out
    assert len((tmp_path / "conditioned.jsonl").read_text().splitlines()) == 5


def test_bench_avx2_runs_native_and_avx2_emulated_workers(tmp_path):
    out = _run(tmp_path, "bench_avx2.py", "--rounds", "1", "--tokens", "2", "--batch", "2", "--threads", "1",
               "--top", "3", "--tag", "smoke")
    rows = _rows(tmp_path / "avx2-tiny-random-smoke.csv")
    assert {r["mode"] for r in rows} == {"native", "avx2"}
    variants = {r["variant"] for r in rows}
    assert {"matmul:mkl", "matmul:onednn", "rollout:ours", "rollout:ours-prepack", "rollout:ours-no-onednn",
            "update:onednn", "update:mkl"} <= variants
    assert all(float(r["seconds"]) > 0 for r in rows)
    md = (tmp_path / "avx2-tiny-random-smoke.md").read_text()
    avx2 = next(line for line in md.splitlines() if line.startswith("| avx2 |"))
    assert "AVX512" not in avx2.split("|")[2]  # the emulation took effect: ATen stops at AVX2 (or below)
    assert "command:" in out and "top operators" in md


def test_compare_fronts_pairs_the_prompts_of_two_stored_fronts(tmp_path, store):
    from test_demo import _sweeps

    plain, conditioned = _sweeps(store)
    out = _run(tmp_path, "compare_fronts.py", "--front", f"plain={store.url}::{plain}", "--front",
               f"cond={store.url}::{conditioned}", "--bootstrap", "50", "--tag", "t", model=None)
    rows = [line for line in (tmp_path / "fronts-t.md").read_text().splitlines() if line.startswith("| plain")
            or line.startswith("| cond")]
    assert "plain (2 points" in rows[0] and "cond (11 points" in rows[1]
    assert rows[0].endswith("| +0.0000 [+0.0000, +0.0000] |")  # the first front against itself
    hv, lo, hi = (float(x) for x in rows[1].split("|")[2].replace("[", "").replace("]", "").replace(",", "").split())
    assert lo <= hv <= hi and "command:" in out
    _run(tmp_path, "compare_fronts.py", "--front", f"cond={store.url}::{conditioned}", "--front",
         f"plain={store.url}::{plain}", "--preferences", "1,0 0,1", "--bootstrap", "20", "--tag", "ends", model=None)
    md = (tmp_path / "fronts-ends.md").read_text()
    assert "| cond (2 points" in md and "| plain (2 points" in md  # the conditioned grid cut to the two ends


def test_paired_hypervolumes_sees_a_dominating_front_through_the_shared_noise():
    """A front that is another plus 0.02 on every prompt and objective is better by a sure margin, although both
    fronts' own intervals are wide and overlap (the prompts' difficulty, shared by every point, dominates the noise):
    the prompts are resampled jointly."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from compare_fronts import paired_hypervolumes

    rng = np.random.default_rng(0)
    a = 0.4 + rng.normal(0, 0.2, size=64) + rng.normal(0, 0.02, size=(3, 2, 64))
    a[0, 0] += 0.2  # three points that trade the two objectives off
    a[2, 1] += 0.2
    base, better = paired_hypervolumes([a, a + 0.02], [0, 0], [1, 1], n_boot=300)
    assert base["diff"] == 0 and base["diff_low"] == base["diff_high"] == 0
    assert better["diff"] > 0 and better["diff_low"] > 0
    assert better["hv_low"] < base["hv_high"]  # the separate intervals overlap; the paired difference does not
    same = paired_hypervolumes([a, a.copy()], [0, 0], [1, 1], n_boot=50)[1]
    assert same["diff"] == same["diff_low"] == same["diff_high"] == 0


def test_bench_time_to_front_times_a_conditioned_sweep_and_splits_the_wait(tmp_path):
    out = _run(tmp_path, "bench_time_to_front.py", "--timeout-min", "8", "--", "--model", "tiny-random", "--steps",
               "2", "--batch-size", "4", "--samples-per-prompt", "2", "--max-new-tokens", "4", "--eval-samples", "4",
               "--eval-max-new-tokens", "4", "--threads", "1", model=None)
    rows = _rows(tmp_path / "time_to_front.csv")
    assert len(rows) == 1 and rows[0]["rc"] == "0"
    row = rows[0]
    assert int(row["steps"]) == 2 and float(row["train_s"]) > 0 and float(row["eval_s"]) >= 0
    assert float(row["load_s"]) > 0 and float(row["first_point_s"]) > 0
    assert row["prompts"] == "4"                                    # every point on the same 4 prompts
    # either the ends came apart (then the clock stopped at or after the first point) or the verdict says not
    if row["reached_s"]:
        assert float(row["reached_s"]) >= float(row["first_point_s"])
    else:
        assert "no round reached a visible front" in out
    assert "command:" in out and "cpu:" in out


def test_bench_live_eval_reports_the_live_fronts_share_of_training_time(tmp_path):
    out = _run(tmp_path, "bench_live_eval.py", "--steps", "2", "--conditioned", "--prompts", "2", "--tokens", "4",
               "--batch", "4", "--max-new-tokens", "4", "--every", "1,10")
    rows = _rows(tmp_path / "live-eval-tiny-random-conditioned.csv")
    assert [int(r["K"]) for r in rows] == [1, 10]
    assert float(rows[0]["step_s"]) > 0 and float(rows[0]["live_s"]) > 0
    assert float(rows[1]["share"]) < float(rows[0]["share"]) < 1     # rarer evaluations cost a smaller share
    assert "| K |" in out and "command:" in out


def _methods_args(*extra: str) -> list[str]:
    return ["--settings", "default", "--seeds", "0", "--minutes", "0.02", "--points", "2", "--eval-samples", "4",
            "--eval-max-new-tokens", "4", "--bootstrap", "50", "--threads", "1", "--tag", "t", "--set", "batch_size=4",
            "samples_per_prompt=2", "max_new_tokens=4", *extra]


def test_bench_methods_trains_every_method_for_equal_time_and_resume_skips_done_fronts(tmp_path):
    """Issue 25: every method's front on the same prompts, each front's runs stopped on time with their steps recorded,
    paired HV intervals around their estimates; --resume trains only the fronts not yet done."""
    import json

    out = _run(tmp_path, "bench_methods.py", *_methods_args("--methods", "pama,mgda"))
    assert "default seed 0 pama p=[1.0, 0.0]" in out and "default seed 0 mgda p=blind" in out
    jsonl = tmp_path / "methods-t.jsonl"
    first = jsonl.read_text().splitlines()
    out = _run(tmp_path, "bench_methods.py", *_methods_args("--resume"))   # every method now: pama and mgda are done
    assert "seed 0 pama p=" not in out and "seed 0 mgda p=" not in out and "seed 0 grpo-norm p=[0.0, 1.0]" in out
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [json.loads(line) for line in first] == records[:len(first)]      # appended, nothing trained again
    runs = [r for r in records if r["kind"] == "run"]
    fronts = {r["method"]: r for r in records if r["kind"] == "front"}
    methods = ["pama1", "pama", "pama-cond", "morlhf", "mgda", "grpo-sum", "grpo-norm"]
    assert sorted(fronts) == sorted(methods)
    assert {m: fronts[m]["runs"] for m in methods} == {"pama1": 1, "pama": 2, "pama-cond": 1, "morlhf": 2, "mgda": 1,
                                                       "grpo-sum": 2, "grpo-norm": 2}
    for r in runs:   # stopped on time: at least one step, the seconds trained recorded, every point on the 4 prompts
        assert r["steps"] >= 1 and r["train_s"] > 0 and r["budget_s"] == pytest.approx(1.2 / len(
            [x for x in runs if x["method"] == r["method"]]))
        assert all(len(p["eval"]["scores"][0]) == 4 for p in r["points"])
    assert len(next(r for r in runs if r["method"] == "pama-cond")["points"]) == 2   # evaluated at both preferences
    rows = _rows(tmp_path / "methods-t.csv")
    assert [r["method"] for r in rows] == methods
    for r in rows:
        assert float(r["HV_low"]) <= float(r["HV"]) <= float(r["HV_high"])
        assert float(r["dHV_low"]) <= float(r["dHV"]) <= float(r["dHV_high"])
        assert float(r["LC_HV_low"]) <= float(r["LC_HV"]) <= float(r["LC_HV_high"])
        assert all(int(s) >= 1 for s in r["steps"].split("/"))
    assert next(r for r in rows if r["method"] == "pama")["dHV"] in ("0.0", "0")
    md = (tmp_path / "methods-t.md").read_text()
    assert "command:" in md and "## default: informativeness, conciseness" in md
    assert "conciseness is length itself and enters raw" in md
    summary = {line.split(" | ")[0][2:]: line for line in md.split("Per seed:")[0].splitlines()
               if line.startswith("| ")}
    assert set(methods) <= set(summary) and summary["pama"].endswith("| reference | reference |")
    for m in methods[:1] + methods[2:]:   # the verdict in plain words, against pama
        assert "no difference at this budget" in summary[m] or "pama (on all 1 seed)" in summary[m], summary[m]
    assert "plotly" in (tmp_path / "methods-t.html").read_text()
    # everything done: a third run trains nothing and appends nothing; the runs of an attempt cut off mid-way (no
    # front row with their front_id) are not counted in the front that was finished later
    orphan = dict(next(r for r in runs if r["method"] == "grpo-sum"), front_id="cut-off")
    with open(jsonl, "a") as fh:
        fh.write(json.dumps(orphan) + "\n")
    out = _run(tmp_path, "bench_methods.py", *_methods_args("--resume"))
    assert "s of training" not in out
    assert len(jsonl.read_text().splitlines()) == len(records) + 1
    assert next(r for r in _rows(tmp_path / "methods-t.csv") if r["method"] == "grpo-sum")["runs"] == "2"


def _bench_methods():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_methods

    return bench_methods


def test_bench_methods_keep_training_stops_nearest_the_budget():
    keep = _bench_methods().keep_training
    assert keep(100.0, 0, 1.0)                     # the first step always runs
    assert keep(4.0, 2, 5.0)                       # the next ends at 6: one step past, but 4 + 1 ≤ 5
    assert not keep(4.5, 2, 5.0)                   # 4.5 + 1.125 > 5: stopping is closer to the budget
    assert not keep(5.0, 5, 5.0)


def test_bench_methods_paired_front_hv_sees_a_better_front_through_shared_prompt_noise():
    import numpy as np

    bm = _bench_methods()
    rng = np.random.default_rng(0)
    a = 0.4 + rng.normal(0, 0.2, size=32) + rng.normal(0, 0.02, size=(2, 2, 32))
    a[0, 0] += 0.2
    a[1, 1] += 0.2
    out = bm.paired_front_hv({"other": a + 0.02, "pama": a, "same": a.copy()}, [0, 0], [1, 1], "pama", n_boot=200)
    assert list(out) == ["pama", "other", "same"]                   # the reference first
    for r in out.values():
        assert r["hv_low"] <= r["hv"] <= r["hv_high"] and r["diff_low"] <= r["diff"] <= r["diff_high"]
    assert out["pama"]["diff"] == out["pama"]["diff_low"] == out["pama"]["diff_high"] == 0
    assert out["same"]["diff_low"] == out["same"]["diff_high"] == 0
    assert out["other"]["diff_low"] > 0 and out["other"]["hv_low"] < out["pama"]["hv_high"]   # paired: apart
    assert "diff" not in bm.paired_front_hv({"other": a}, [0, 0], [1, 1], "pama", n_boot=10)["other"]


def test_bench_methods_verdict_needs_every_seed():
    verdict = _bench_methods().verdict
    assert verdict([(0.01, 0.05), (0.002, 0.03)]) == "ahead of pama (on all 2 seeds)"
    assert verdict([(0.01, 0.05), (-0.01, 0.03)]) == "no difference at this budget"
    assert verdict([(-0.05, -0.01)]) == "behind pama (on all 1 seed)"
    assert verdict([]).startswith("no pama front")


def test_bench_methods_length_control_removes_what_length_explains_and_leaves_length_raw():
    import numpy as np

    lc = _bench_methods().length_controlled_scores
    words = {"base": np.full(8, 10.0), "long": np.full(8, 40.0)}
    score = {k: 0.1 * np.log1p(w) for k, w in words.items()}          # objective 0: pure length; objective 1: length
    groups = {k: (np.stack([score[k], w / 100]), words[k]) for k, w in words.items()}
    out = lc(groups, [False, True], "base")
    assert np.allclose(out["long"][0], out["base"][0]) and np.allclose(out["base"][0], score["base"])
    assert np.allclose(out["long"][1], 0.4)                            # a length objective stays raw


def test_bench_learnability_trains_both_ends_to_the_eval_steps_on_the_chosen_prompts_and_resumes(tmp_path):
    """docs/learnability.md: each end trained to fixed step counts and evaluated at each on the held-out set given
    (here the negative-premise one, trained on its own training set), separations raw and length-controlled; the base
    row says which prompts it was evaluated on, and --resume trains nothing twice."""
    import json

    args = ("--pairs", "sentiment,relevance", "--variant",
            "v:prompts=builtin:premise-train,max_new_tokens=8,batch_size=4,samples_per_prompt=2,eos_weight=0.5",
            "--eval-steps", "1,2", "--eval-samples", "4", "--eval-max-new-tokens", "8",
            "--eval-prompts", "builtin:premise-heldout", "--tag", "t")
    out = _run(tmp_path, "bench_learnability.py", *args, "--resume")
    assert "4 of builtin:premise-heldout" in out and "end sentiment" in out and "end relevance" in out
    jsonl = tmp_path / "learnability-t.jsonl"
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    base = next(r for r in records if r["kind"] == "base")
    assert base["eval_prompts"] == "builtin:premise-heldout" and len(base["scores"][0]) == 4
    runs = [r for r in records if r["kind"] == "run"]
    assert sorted(r["end"] for r in runs) == [0, 1]
    for r in runs:
        assert [e["step"] for e in r["evals"]] == [1, 2]
        assert r["config"]["prompts"] == "builtin:premise-train" and r["config"]["eos_weight"] == 0.5
    rows = _rows(tmp_path / "learnability-t.csv")
    assert len(rows) == 2 and {r["steps"] for r in rows} == {"1", "2"}
    out = _run(tmp_path, "bench_learnability.py", *args, "--resume")
    assert "end sentiment" not in out and len(jsonl.read_text().splitlines()) == len(records)


def test_bench_learnability_ends_trains_one_end_alone_and_refuses_an_unknown_end(tmp_path):
    """--ends 1: only the second objective's end is trained (a seed check of one end, docs/learnability.md §17);
    --ends 2 is refused with the accepted values."""
    import json

    args = ("--pairs", "sentiment,relevance", "--variant", "v:max_new_tokens=4,batch_size=2,samples_per_prompt=2,seed=3",
            "--eval-steps", "1", "--eval-samples", "2", "--eval-max-new-tokens", "4", "--tag", "one")
    out = _run(tmp_path, "bench_learnability.py", *args, "--ends", "1")
    assert "end relevance" in out and "end sentiment" not in out
    runs = [json.loads(line) for line in (tmp_path / "learnability-one.jsonl").read_text().splitlines()]
    runs = [r for r in runs if r["kind"] == "run"]
    assert [r["end"] for r in runs] == [1] and runs[0]["config"]["seed"] == 3
    env = dict(os.environ, PAMA_BENCH_RESULTS=str(tmp_path), PAMA_HOME=str(tmp_path / "home"))
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_learnability.py"), *args, "--ends", "2"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert bad.returncode != 0 and "--ends takes 0, 1 or 0,1" in bad.stderr


def test_length_bins_averages_each_objective_per_word_count_bin_beside_the_base(tmp_path):
    import json

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from length_bins import bin_means, table

    assert bin_means([1.0, 3.0, 5.0, 7.0], [10, 20, 40, 200], [30, 60]) == [(2.0, 2), (5.0, 1), (7.0, 1)]
    assert bin_means([1.0], [10], [30])[1][1] == 0
    base = dict(kind="base", pair="a,b", values={"a": [0, 0, 0], "b": [0, 0, 0]}, scores=[[0.5, 0.7], [0.1, 0.2]],
                words=[10, 100])
    run = dict(kind="run", variant="v", pair="a,b", end=1,
               evals=[dict(step=20, values=base["values"], scores=[[0.0, 1.0], [0.9, 0.3]], words=[5, 50])])
    out = table([base, run], "b", [30])
    assert "| base (a,b) | 0.10 (1) | 0.20 (1) | 55 | 0.50 |" in out
    assert "| v: b end, 20 steps | 0.90 (1) | 0.30 (1) | 28 | 0.50 |" in out
    path = tmp_path / "l.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (base, run)))
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "length_bins.py"), str(path), "--objective", "c"],
                         capture_output=True, text=True)
    assert res.returncode != 0 and "not in this file's pair" in res.stderr


def _two_end_front(steps: int, own: float, other: float, hw: float) -> dict:
    """A two-end sweep export whose ends differ by own − other on each objective, every 95% half-width hw."""
    def point(pref, a, b):
        p = {"kind": "adapter", "preference": pref, "kl": 1.0, "eos_fraction": 0.9, "mean_length": 50.0}
        for o, m in (("sentiment", a), ("relevance", b)):
            p.update({f"{o}/mean": m, f"{o}/ci_low": m - hw, f"{o}/ci_high": m + hw,
                      f"{o}/lc_mean": m, f"{o}/lc_low": m - 2 * hw, f"{o}/lc_high": m + 2 * hw})
        return p
    return {"sweep": {"objectives": ["sentiment", "relevance"], "config": {"steps": steps}},
            "points": [{"kind": "base", "preference": None}, point([1.0, 0.0], own, other),
                       point([0.0, 1.0], other, own)]}


def test_stability_curve_lines_up_separations_by_steps_raw_and_length_controlled(tmp_path):
    """benchmarks/stability_curve.py: each front export gives one row at its config's steps, the separation of each
    objective (difference / mean half-width) raw and on the stored length-controlled intervals, sorted by steps;
    the shipped 40-step export of demo/front's recipe gives the figures docs/learnability.md §15 quotes."""
    import json

    late, early = tmp_path / "late.json", tmp_path / "early.json"
    late.write_text(json.dumps(_two_end_front(80, 0.6, 0.4, 0.05)))   # difference 0.2, half-width 0.05: 4
    early.write_text(json.dumps(_two_end_front(20, 0.5, 0.45, 0.05)))  # difference 0.05: 1
    shipped = ROOT / "benchmarks" / "results" / "front-complaints-40.json"
    _run(tmp_path, "stability_curve.py", "--tag", "t", "--front", str(late), str(early), str(shipped), model=None)
    table = (tmp_path / "stability-t.md").read_text()
    rows = [line.strip("| ").split(" | ") for line in table.splitlines() if line[:3].strip("| ").isdigit()]
    assert [int(r[0]) for r in rows] == [20, 40, 80]
    seps = [[float(v) for v in r[1:5]] for r in rows]  # sep x, sep y, lc sep x, lc sep y
    assert seps[0] == [1.0, 1.0, 0.5, 0.5] and seps[2] == [4.0, 4.0, 2.0, 2.0]
    assert seps[1] == [2.65, 3.84, 3.16, 3.8]
    html = (tmp_path / "stability-t.html").read_text()
    assert "length-controlled" in html and "plotly" in html
    # a conditioned adapter's ends: demo/conditioned's 128-step front (docs/learnability.md section 23)
    cond = ROOT / "benchmarks" / "results" / "front-conditioned-echo6-a03-128.json"
    _run(tmp_path, "stability_curve.py", "--tag", "c", "--front", str(cond), model=None)
    rows = [line.strip("| ").split(" | ") for line in (tmp_path / "stability-c.md").read_text().splitlines()
            if line[:3].strip("| ").isdigit()]
    assert [r[0] for r in rows] == ["128"] and [float(v) for v in rows[0][1:5]] == [3.75, 1.65, 2.66, 1.44]


def test_prompt_echo_counts_answers_that_copy_a_run_of_prompt_words(store):
    """benchmarks/prompt_echo.py: the demo's relevance end restates its prompt; the count must see a copied run of k
    words (case and punctuation ignored) and nothing shorter, per point of one sweep only."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from prompt_echo import copies_prompt, echo_rows

    prompt = "The meeting room is no longer available. Write a message to your book club."
    assert copies_prompt(prompt, "Sorry! the Meeting room, is no longer available today.", k=6)
    assert not copies_prompt(prompt, "The meeting room is gone; no longer available.", k=6)   # runs of 4 and 3
    assert copies_prompt(prompt, "the meeting room is gone", k=3) and not copies_prompt(prompt, "", k=1)

    sid = store.create_sweep(name="echo", method="pama", model="tiny-random", objectives=["a"], config={})
    cfg = dict(n_prompts=2, seed=1, max_new_tokens=8, temperature=0.7)
    for kind, texts in (("base", ["Dear club, we meet elsewhere.", "ok"]),
                        ("adapter", ["The meeting room is no longer available.", "ok"])):
        store.add_point(kind=kind, label=kind, model="tiny-random", sweep_id=sid, eval_config=cfg,
                        method=None if kind == "base" else "pama", preference=None if kind == "base" else [1.0],
                        values={"a": (0.0, 0.0, 0.0)},
                        generations=[dict(prompt_index=k, prompt=prompt, text=t, scores={"a": 0.0})
                                     for k, t in enumerate(texts)])
    other = store.create_sweep(name="other", method="pama", model="tiny-random", objectives=["a"], config={})
    store.add_point(kind="base", label="x", model="tiny-random", sweep_id=other, eval_config=cfg,
                    values={"a": (0.0, 0.0, 0.0)}, generations=[dict(prompt_index=0, prompt=prompt, text=prompt,
                                                                      scores={"a": 0.0})])
    rows = {r["kind"]: r for r in echo_rows(store, sid, 6)}
    assert set(rows) == {"base", "adapter"}
    assert (rows["base"]["copy >= 6 prompt words"], rows["adapter"]["copy >= 6 prompt words"]) == (0, 1)
    assert rows["adapter"]["share"] == 0.5 and rows["adapter"]["preference"] == "1"


def test_prompt_echo_rescores_relevance_without_the_copied_words(store):
    """--relevance: the echoing point's relevance drops once copied prompt runs earn nothing; an answer that copies
    nothing keeps its stored relevance; every point also gets a length-controlled guarded score."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from prompt_echo import echo_rows

    from pama.objectives import get

    prompt = "My flight to Lisbon was cancelled and the airline will not refund me. Write a note to a friend."
    own = ["The airline scrapped my Lisbon trip and keeps the money, so no beach for me.",
           "No Lisbon this week: the carrier cancelled and refuses any refund."]
    echo = ["My flight to Lisbon was cancelled and the airline will not refund me.",
            "My flight to Lisbon was cancelled and the airline will not refund me. Sad."]
    rel = get("relevance")
    sid = store.create_sweep(name="echo", method="pama", model="tiny-random", objectives=["relevance"], config={})
    cfg = dict(n_prompts=2, seed=1, max_new_tokens=8, temperature=0.7)
    for kind, texts in (("base", own), ("adapter", echo)):
        plain = rel.score([prompt] * 2, texts)
        store.add_point(kind=kind, label=kind, model="tiny-random", sweep_id=sid, eval_config=cfg,
                        method=None if kind == "base" else "pama", preference=None if kind == "base" else [0.0, 1.0],
                        values={"relevance": (sum(plain) / 2, min(plain), max(plain))},
                        generations=[dict(prompt_index=k, prompt=prompt, text=t, scores={"relevance": s})
                                     for k, (t, s) in enumerate(zip(texts, plain))])
    rows = {r["kind"]: r for r in echo_rows(store, sid, 6, relevance=True)}
    mean = lambda row, col: float(row[col].split()[0])  # noqa: E731
    assert mean(rows["base"], "relevance:echo=6") == pytest.approx(mean(rows["base"], "relevance"), abs=1e-3)
    assert mean(rows["adapter"], "relevance") > mean(rows["base"], "relevance")     # echoing wins plain relevance
    assert mean(rows["adapter"], "relevance:echo=6") < 0.1 < mean(rows["base"], "relevance:echo=6")
    assert all("relevance:echo=6, length-controlled" in r for r in rows.values())


def test_bench_eval_kl_times_the_full_width_and_grouped_kl_forwards_and_they_agree(tmp_path):
    """Session 21: every arm computes the KL of the same responses; the old full-width arm is the baseline (ratio 1)
    and every grouping agrees with it to float rounding."""
    out = _run(tmp_path, "bench_eval_kl.py", "--prompts", "5", "--tokens", "6", "--rounds", "2", "--kl-rows", "5,2,1",
               "--threads", "1")
    assert "command:" in out and "- cpu:" in out
    rows = _rows(tmp_path / "eval-kl-tiny-random.csv")
    assert [int(r["kl_rows"]) for r in rows] == [5, 2, 1]
    assert rows[0]["way"] == "old (full width)" and float(rows[0]["kl_speedup"]) == 1.0
    assert all(float(r["kl_s"]) > 0 and float(r["max_abs_kl_diff"]) < 1e-4 for r in rows)


def test_kl_trace_puts_the_kl_penalty_beside_the_reward_spread_per_block_of_steps(tmp_path, store):
    """β·KL is the mean of each step's product (not the product of the means), blocks cover the steps in order, and
    the table and the figure are written with --tag."""
    run = store.create_run(name="r", method="pama", model="tiny-random", config={}, total_steps=4,
                           objectives=[{"name": "sentiment", "lower": -1, "upper": 1}])
    for step, (beta, kl, sd) in enumerate([(0.1, 1.0, 0.5), (0.1, 3.0, 0.5), (0.2, 4.0, 0.4), (0.4, 6.0, 0.2)], 1):
        store.log_metrics(run, step, {"beta": beta, "kl": kl, "rewards/sentiment/std": sd,
                                      "rewards/sentiment/mean": 0.1 * step, "response_length": 10 * step})
    out = _run(tmp_path, "kl_trace.py", run, "--block", "2", "--db", store.url, "--tag", "t", model=None)
    rows = [[float(x) for x in line.strip("| ").split(" | ")[1:]] for line in out.splitlines()
            if line.startswith("| 1-2") or line.startswith("| 3-4")]
    assert rows[0][:3] == pytest.approx([0.1, 2.0, 0.2])       # β, KL, β·KL = (0.1 + 0.3) / 2
    assert rows[1][:3] == pytest.approx([0.3, 5.0, 1.6])       # (0.8 + 2.4) / 2, not 0.3 × 5.0
    assert rows[1][4] == pytest.approx(0.3)                    # the spread: (0.4 + 0.2) / 2
    assert (tmp_path / "kltrace-t.md").exists() and "KL penalty per answer" in (tmp_path / "kltrace-t.html").read_text()


def test_ends_table_separates_ends_that_differ_at_equal_length_and_not_ends_that_differ_by_length(tmp_path, store):
    """Three points in one store, each with 40 answers: end 1 scores higher on `a` than end 2 at the same answer
    lengths (apart, raw and controlled); on `b` end 2 is higher only because its answers are longer and `b` follows log
    length in every point (apart raw, not once length is controlled)."""
    import numpy as np

    rng = np.random.default_rng(0)

    def point(label, a_shift, long):
        words = rng.integers(5, 15, 40) + (20 if long else 0)
        a = rng.normal(0.3 + a_shift, 0.1, 40)
        b = 0.3 * np.log1p(words) + rng.normal(0, 0.02, 40)   # the length control fits log(1 + words)
        gens = [dict(prompt_index=i, prompt="p", text=" ".join(["w"] * int(n)), scores={"a": float(x), "b": float(y)})
                for i, (n, x, y) in enumerate(zip(words, a, b))]
        ci = lambda v: (float(v.mean()), float(v.mean() - 2 * v.std() / 40 ** 0.5), float(v.mean() + 2 * v.std() / 40 ** 0.5))
        return store.add_point(kind="adapter" if label != "base" else "base", label=label, model="m",
                               values={"a": ci(a), "b": ci(b)}, kl=1.0, mean_length=float(words.mean()),
                               eos_fraction=1.0, generations=gens)

    base, end1, end2 = point("base", 0.0, False), point("e1", 0.3, False), point("e2", 0.0, True)
    out = _run(tmp_path, "ends_table.py", f"{store.url}:{base}", f"{store.url}:{end1}", f"{store.url}:{end2}",
               "--out", "ends-t.md", model=None)
    seps = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:5]]
            for line in out.splitlines() if line.startswith("| a ") or line.startswith("| b ")}
    assert float(seps["a"][0]) > 2 and float(seps["a"][1]) > 2 and float(seps["a"][2]) < 0.5
    assert float(seps["b"][0]) > 2 and abs(float(seps["b"][1])) < 2 and float(seps["b"][2]) > 0.7
    assert (tmp_path / "ends-t.md").read_text().count("| end") == 2
