"""Built-in prompt sets, prompt loading from every supported source, and deterministic batching."""
from __future__ import annotations

import itertools
import json
import re
from collections import Counter

import pytest

from pama.prompts import BUILTIN, PromptError, PromptSampler, builtin_records, load_prompts, prompt_sets


def _norm(s: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", s.lower()).split())


def _jaccard(a: str, b: str) -> float:
    a, b = set(_norm(a).split()), set(_norm(b).split())
    return len(a & b) / len(a | b)


# the default sets, and the negative-premise sets of the sentiment-vs-relevance pair (docs/learnability.md)
@pytest.fixture(scope="module", params=[("train", "heldout"), ("premise-train", "premise-heldout")], ids=str)
def names(request):
    return request.param


@pytest.fixture(scope="module")
def train(names):
    return builtin_records(names[0])


@pytest.fixture(scope="module")
def heldout(names):
    return builtin_records(names[1])


# ------------------------------------------------------------------------------------------- built-in sets


def test_counts(names, train, heldout):
    assert len(train) >= 128
    assert len(heldout) >= 128  # a front is evaluated on 128 held-out prompts (the demo bar)
    assert len(load_prompts(f"builtin:{names[0]}")) == len(train)
    assert len(load_prompts(f"builtin:{names[1]}")) == len(heldout)


def test_files_are_clean_jsonl():
    for path in BUILTIN.values():
        for line in path.read_text(encoding="utf-8").splitlines():
            obj = json.loads(line)
            assert set(obj) == {"prompt", "task"}
            assert obj["prompt"] == obj["prompt"].strip() and obj["task"]


def test_prompts_nonempty_short_single_line(train, heldout):
    for r in train + heldout:
        p = r["prompt"]
        assert p.strip(), r
        assert "\n" not in p, r
        assert len(p.split()) <= 30, r


def test_no_duplicates_within_sets(train, heldout):
    for records in (train, heldout):
        prompts = [r["prompt"] for r in records]
        assert len(set(prompts)) == len(prompts)
        normed = [_norm(p) for p in prompts]
        dups = [p for p, c in Counter(normed).items() if c > 1]
        assert not dups, dups


def test_disjoint_exact_and_normalised(train, heldout):
    tr = {r["prompt"] for r in train}
    ho = {r["prompt"] for r in heldout}
    assert not tr & ho
    assert not {_norm(p) for p in tr} & {_norm(p) for p in ho}


def test_no_near_duplicates(train, heldout):
    """Held-out prompts are not train prompts with a word changed (word-set Jaccard stays low)."""
    cross = [
        (a["prompt"], b["prompt"])
        for a, b in itertools.product(train, heldout)
        if _jaccard(a["prompt"], b["prompt"]) >= 0.65
    ]
    assert not cross, cross[:5]
    within = [
        (a["prompt"], b["prompt"])
        for records in (train, heldout)
        for a, b in itertools.combinations(records, 2)
        if _jaccard(a["prompt"], b["prompt"]) >= 0.8
    ]
    assert not within, within[:5]


def test_task_mix_balanced(train, heldout):
    tr = Counter(r["task"] for r in train)
    ho = Counter(r["task"] for r in heldout)
    assert set(tr) == set(ho) and len(tr) >= 8
    for counts in (tr, ho):
        assert max(counts.values()) <= 2 * min(counts.values()), counts
    # prefixes (limit=N) are balanced too: the files interleave the task types
    first = Counter(r["task"] for r in train[: len(tr)])
    assert len(first) == len(tr)


def test_prompt_sets_listing(names, train, heldout):
    sets = {s["name"]: s for s in prompt_sets()}
    assert set(sets) == {"train", "heldout", "premise-train", "premise-heldout", "premise-brief-train",
                         "premise-brief-heldout"}
    tr, ho = names
    assert sets[tr]["count"] == len(train) and sets[ho]["count"] == len(heldout)
    assert sets[tr]["source"] == f"builtin:{tr}" and sets[tr]["description"]
    assert sum(sets[ho]["tasks"].values()) == len(heldout)
    assert load_prompts(sets[ho]["source"], limit=5) == [r["prompt"] for r in heldout[:5]]


def test_brief_sets_are_the_premise_sets_asking_for_two_or_three_sentences():
    """builtin:premise-brief-* are derived at load time (no second copy of the data): each prompt is its premise
    set's prompt plus the instruction, in the same order and tasks; listed with the parent's file."""
    from pama.prompts import BRIEF

    for split in ("train", "heldout"):
        plain, brief = builtin_records(f"premise-{split}"), builtin_records(f"premise-brief-{split}")
        assert [dict(r, prompt=r["prompt"] + BRIEF) for r in plain] == brief
        assert load_prompts(f"builtin:premise-brief-{split}", limit=3)[0].endswith("Answer in two or three sentences.")
        assert load_prompts(f"builtin:premise-brief-{split}:advice")[0].startswith(
            load_prompts(f"builtin:premise-{split}:advice")[0])
    listed = {s["name"]: s for s in prompt_sets()}
    assert listed["premise-brief-heldout"]["path"] == listed["premise-heldout"]["path"]
    assert listed["premise-brief-heldout"]["count"] == 128
    with pytest.raises(PromptError, match="builtin:premise-brief-train"):
        builtin_records("premise-terse")


def test_sets_do_not_share_prompts():
    """No built-in prompt is in two sets: a held-out prompt never trained on, whichever set trained."""
    seen = Counter(_norm(r["prompt"]) for name in BUILTIN for r in builtin_records(name))
    assert not [p for p, c in seen.items() if c > 1]


def test_builtin_unknown():
    with pytest.raises(PromptError, match=r"unknown built-in.*builtin:train"):
        load_prompts("builtin:test")


# ------------------------------------------------------------------------------------------- file loading


def test_jsonl(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "  a  "}\n\n{"text": "b"}\n"c"\n{"prompt": ""}\n', encoding="utf-8")
    assert load_prompts(str(f)) == ["a", "b", "c"]
    g = tmp_path / "q.jsonl"
    g.write_text('{"question": "x", "id": 1}\n{"question": "y", "id": 2}\n', encoding="utf-8")
    assert load_prompts(str(g), column="question") == ["x", "y"]
    assert load_prompts(g, column="question", limit=1) == ["x"]


def test_json(tmp_path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps(["one", " two ", ""]), encoding="utf-8")
    assert load_prompts(str(f)) == ["one", "two"]
    f.write_text(json.dumps([{"prompt": "x"}, {"prompt": "y"}]), encoding="utf-8")
    assert load_prompts(str(f)) == ["x", "y"]
    f.write_text(json.dumps([{"q": "x"}]), encoding="utf-8")
    assert load_prompts(str(f), column="q") == ["x"]


def test_csv_and_tsv(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text('id,prompt\n1,"Hello, world"\n2,  second  \n3,\n', encoding="utf-8")
    assert load_prompts(str(f)) == ["Hello, world", "second"]
    g = tmp_path / "q.csv"
    g.write_text("id,instruction\n1,do this\n", encoding="utf-8")
    assert load_prompts(str(g), column="instruction") == ["do this"]
    t = tmp_path / "p.tsv"
    t.write_text("text\tx\nfirst, with comma\t1\n", encoding="utf-8")
    assert load_prompts(str(t)) == ["first, with comma"]


def test_txt(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("\ufefffirst\n\n   \n  second  \r\nthird\n", encoding="utf-8")
    assert load_prompts(str(f)) == ["first", "second", "third"]
    assert load_prompts(str(f), limit=2) == ["first", "second"]


# ------------------------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    with pytest.raises(PromptError, match=r"not found.*nope\.jsonl.*builtin:train"):
        load_prompts(str(tmp_path / "nope.jsonl"))
    with pytest.raises(PromptError, match=r"did you mean builtin:train"):
        load_prompts("train")


def test_unknown_extension(tmp_path):
    f = tmp_path / "p.xlsx"
    f.write_text("x", encoding="utf-8")
    with pytest.raises(PromptError, match=r"unknown prompt file extension '\.xlsx'.*\.jsonl"):
        load_prompts(str(f))


def test_missing_column_lists_columns(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("id,question\n1,x\n", encoding="utf-8")
    with pytest.raises(PromptError, match=r"no 'prompt' or 'text' column.*'id', 'question'.*column="):
        load_prompts(str(f))
    with pytest.raises(PromptError, match=r"column 'q' not found.*'id', 'question'"):
        load_prompts(str(f), column="q")
    g = tmp_path / "p.jsonl"
    g.write_text('{"prompt": "a"}\n{"body": "b"}\n', encoding="utf-8")
    with pytest.raises(PromptError, match=r"line 2.*'body'"):
        load_prompts(str(g))


def test_malformed_json_line(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "a"}\n\n{"prompt": "b",}\n', encoding="utf-8")
    with pytest.raises(PromptError, match=r"malformed JSON on line 3"):
        load_prompts(str(f))
    g = tmp_path / "p.json"
    g.write_text('["a",\n "b"', encoding="utf-8")
    with pytest.raises(PromptError, match=r"malformed JSON at line 2"):
        load_prompts(str(g))
    g.write_text('{"a": 1}', encoding="utf-8")
    with pytest.raises(PromptError, match=r"expected a JSON list"):
        load_prompts(str(g))


def test_empty_result(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("\n   \n", encoding="utf-8")
    with pytest.raises(PromptError, match=r"no prompts found"):
        load_prompts(str(f))
    g = tmp_path / "p.csv"
    g.write_text("", encoding="utf-8")
    with pytest.raises(PromptError, match=r"no header"):
        load_prompts(str(g))


def test_bad_values(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": 3}\n', encoding="utf-8")
    with pytest.raises(PromptError, match=r"line 1.*expected text, got int"):
        load_prompts(str(f))
    with pytest.raises(PromptError, match=r"limit"):
        load_prompts("builtin:train", limit=0)
    with pytest.raises(PromptError, match=r"empty prompt source"):
        load_prompts("  ")


def test_errors_are_value_errors():
    assert issubclass(PromptError, ValueError)


# ------------------------------------------------------------------------------------------- datasets


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    datasets = pytest.importorskip("datasets")
    root = tmp_path_factory.mktemp("hf")
    single = root / "single"
    datasets.Dataset.from_dict({"prompt": ["p1", " p2 ", ""], "q": ["q1", "q2", "q3"]}).save_to_disk(str(single))
    multi = root / "multi"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": ["t1", "t2"]}),
            "test": datasets.Dataset.from_dict({"text": ["e1"]}),
        }
    ).save_to_disk(str(multi))
    return single, multi


def test_hf_local_dataset(hf_dirs):
    single, multi = hf_dirs
    assert load_prompts(f"hf:{single}") == ["p1", "p2"]
    assert load_prompts(f"hf:{single}", column="q") == ["q1", "q2", "q3"]
    assert load_prompts(f"hf:{multi}") == ["t1", "t2"]  # train split by default
    assert load_prompts(f"hf:{multi}:test") == ["e1"]
    assert load_prompts(f"hf:{multi}:train:text", limit=1) == ["t1"]


def test_hf_errors(hf_dirs, tmp_path):
    single, multi = hf_dirs
    with pytest.raises(PromptError, match=r"no split 'validation'.*train, test"):
        load_prompts(f"hf:{multi}:validation")
    with pytest.raises(PromptError, match=r"column 'nope' not found.*'prompt', 'q'"):
        load_prompts(f"hf:{single}::nope")
    with pytest.raises(PromptError, match=r"dataset folder not found"):
        load_prompts(f"hf:{tmp_path / 'missing'}")
    with pytest.raises(PromptError, match=r"bad dataset source"):
        load_prompts("hf:")


def test_hf_unreachable_offline(monkeypatch):
    datasets = pytest.importorskip("datasets")

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'someone/prompts' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(PromptError, match=r"could not load dataset 'someone/prompts'.*offline.*local"):
        load_prompts("hf:someone/prompts:train:question")


# ------------------------------------------------------------------------------------------- sampler


def test_sampler_deterministic():
    prompts = [f"p{i}" for i in range(37)]
    a, b = PromptSampler(prompts, 5, seed=3), PromptSampler(prompts, 5, seed=3)
    # same (seed, step) -> same batch, whatever the order of the calls (resumable)
    assert [a.batch(s) for s in range(20)] == [b.batch(s) for s in reversed(range(20))][::-1]
    assert PromptSampler(prompts, 5, seed=3).batch(123) == a.batch(123)
    assert all(len(a.batch(s)) == 5 for s in range(30))
    c = PromptSampler(prompts, 5, seed=4)
    assert [a.batch(s) for s in range(8)] != [c.batch(s) for s in range(8)]


def test_sampler_epoch_coverage():
    prompts = [f"p{i}" for i in range(24)]
    s = PromptSampler(prompts, 6, seed=0)
    assert s.steps_per_epoch == 4
    e0 = [p for step in range(4) for p in s.batch(step)]
    e1 = [p for step in range(4, 8) for p in s.batch(step)]
    assert sorted(e0) == sorted(prompts) and sorted(e1) == sorted(prompts)
    assert e0 != e1  # reshuffled per epoch
    assert s.epoch(3) == 0 and s.epoch(4) == 1


def test_sampler_uneven_and_large_batches():
    prompts = [f"p{i}" for i in range(10)]
    s = PromptSampler(prompts, 3, seed=1)
    stream = [p for step in range(10) for p in s.batch(step)]  # 30 positions = 3 epochs
    for e in range(3):
        assert sorted(stream[10 * e: 10 * (e + 1)]) == sorted(prompts)
    big = PromptSampler(prompts, 25, seed=1)
    assert len(big.batch(0)) == 25 and Counter(big.batch(0))[prompts[0]] >= 2


def test_sampler_validation():
    with pytest.raises(PromptError):
        PromptSampler([], 2, 0)
    with pytest.raises(PromptError, match="batch_size"):
        PromptSampler(["a"], 0, 0)
    with pytest.raises(PromptError, match="step"):
        PromptSampler(["a"], 1, 0).batch(-1)

