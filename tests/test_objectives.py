"""Objectives: real scorers (no mocks), a tiny in-process hf: model, py: callables, validation."""

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

from pama import objectives as O
from pama.objectives import ObjectiveError

BUILTINS = ["sentiment", "conciseness", "informativeness", "density", "length", "relevance", "safety", "readability"]


def test_available_lists_builtins():
    assert O.available() == BUILTINS
    for name in BUILTINS:
        obj = O.get(name)
        assert obj.name == name and obj.direction == "maximize"
        assert math.isfinite(obj.lower) and math.isfinite(obj.upper) and obj.lower < obj.upper
        assert obj.description and "\n" not in obj.description
    rows = O.catalog()
    assert [r["name"] for r in rows] == BUILTINS


def test_sentiment_per_sentence_scores_the_tone_not_how_much_of_it_there_is():
    """The whole-response compound is a saturating sum: saying the same happy sentence three times scores higher than
    once. Per sentence, it is the same tone and the same score; a mixed text lands between its sentences' scores."""
    happy, sad = "The staff were friendly and the food was wonderful.", "The room was dirty and the bed was awful."
    whole, per = O.get("sentiment"), O.get("sentiment:per=sentence")
    once, thrice = happy, " ".join([happy] * 3)
    assert whole.score(None, [thrice])[0] > whole.score(None, [once])[0] + 0.05
    assert per.score(None, [thrice])[0] == pytest.approx(per.score(None, [once])[0])
    h, s_ = per.score(None, [happy, sad])
    mixed = per.score(None, [f"{happy}\n{sad}"])[0]
    assert s_ < 0 < h and mixed == pytest.approx((h + s_) / 2)
    assert per.score(None, ["", "   "]) == [0.0, 0.0]
    with pytest.raises(O.ObjectiveError, match="per must be one of response, sentence"):
        O.get("sentiment:per=word")


def test_sentiment_ranks_positive_above_negative():
    s = O.get("sentiment").score(None, ["I love this, it is wonderful and delightful!", "This is awful, I hate it."])
    assert s[0] > 0.5 and s[1] < -0.5


def test_conciseness_ranks_shorter_above_longer():
    short, long_ = "Yes.", "Well, it depends on many things, " * 10
    s = O.get("conciseness").score(None, [short, long_])
    assert 0 < s[1] < s[0] <= 1
    assert O.get("conciseness:scale=10").score(None, ["a " * 10])[0] == pytest.approx(math.exp(-1))


def test_length_follows_clip_formula():
    texts = ["x" * 7, "x" * 140, "x" * 175, "x" * 1000]
    assert O.get("length").score(None, texts) == pytest.approx([0.5, 1.0, 1.25, 1.5])
    obj = O.get("length:unit=words,scale=10,lo=0.2,hi=2")
    assert (obj.lower, obj.upper) == (0.2, 2.0)
    assert obj.score(None, ["a", "a " * 15, "a " * 50]) == pytest.approx([0.2, 1.5, 2.0])
    tok = O.get("length:unit=tokens,scale=4,lo=0,hi=10").score(None, ["hello world, friends"])
    assert tok == pytest.approx([4 / 4])  # hello world , friends


def test_relevance_ranks_on_topic_above_off_topic():
    prompt = "How do I bake sourdough bread at home?"
    on = "Mix flour, water and your starter, let the dough rise overnight, then bake it in a hot oven."
    off = "The stock market closed lower today as investors worried about interest rates."
    s = O.get("relevance").score([prompt, prompt], [on, off])
    assert s[0] > s[1] + 0.2


def test_copied_share_counts_the_words_inside_copied_prompt_runs():
    prompt = "The meeting room is no longer available. Write a message to your book club."
    assert O.copied_share(prompt, prompt, 6) == 1.0
    # 7 of 10 words lie in the copied run "the meeting room is no longer available" (case, punctuation ignored)
    assert O.copied_share(prompt, "Sorry, the Meeting room is no longer available! See you.", 6) == pytest.approx(0.7)
    assert O.copied_share(prompt, "The meeting room is gone; no longer available.", 6) == 0.0  # runs of 4 and 3 only
    assert O.copied_share(prompt, "", 6) == 0.0 and O.copied_share(prompt, prompt, 0) == 0.0


def test_relevance_echo_scores_only_what_the_answer_did_not_copy():
    """relevance rewards restating the prompt (an answer's embedding is nearest the prompt's when it is the prompt):
    with echo=K the cosine is scaled by the share of words outside copied K-word runs, so a verbatim echo earns 0
    and an answer that copies nothing keeps its plain relevance."""
    prompt = "My flight to Lisbon was cancelled and the airline will not refund me. Write a short note to a friend."
    echo = "My flight to Lisbon was cancelled and the airline will not refund me."
    own = "Bad news: no Lisbon trip this week, the airline scrapped the flight and keeps my money."
    plain, guarded = O.get("relevance"), O.get("relevance:echo=6")
    p, g = plain.score([prompt] * 2, [echo, own]), guarded.score([prompt] * 2, [echo, own])
    assert p[0] > p[1]                       # plain relevance prefers the echo ...
    assert g[0] == 0.0 and g[1] == pytest.approx(p[1], abs=1e-6)  # ... the guarded one does not
    assert guarded.params == {"echo": 6} and "copied" in guarded.description
    with pytest.raises(O.ObjectiveError, match="echo must be a whole number"):
        O.get("relevance:echo=2.5")


def test_relevance_embedder_is_sentence_transformers_offline_and_matches_mean_pooling():
    """The relevance embedder loads through sentence-transformers from the wheel's folder without the hub (no network
    at all: sockets refused, HF_HUB_OFFLINE unset) and gives the cosines of plain mean pooling over AutoModel."""
    import subprocess
    import sys

    code = """
import socket
def refuse(*a, **k):
    raise OSError("network refused by the test")
socket.socket.connect = refuse
socket.create_connection = refuse
import numpy as np, torch
from transformers import AutoModel, AutoTokenizer
from pama.objectives import builtin as B
texts = ["How do I bake sourdough bread at home?", "Mix flour, water and starter.", "", "Stocks fell today."]
emb = B._embedder()
assert type(emb.model).__name__ == "SentenceTransformer"
got = emb.encode(texts)
path = str(B._minilm_dir())
tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
with torch.inference_mode():
    batch = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    ref = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
assert got.shape == ref.shape == (4, 384) and got.dtype == np.float32, (got.shape, ref.shape)
assert np.abs(got @ got.T - ref @ ref.T).max() < 1e-4
assert emb.encode([]).shape == (0, 384)
print("ok")
"""
    env = {k: v for k, v in __import__("os").environ.items() if k != "HF_HUB_OFFLINE"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env,
                          cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


def test_safety_ranks_offensive_below_polite():
    s = O.get("safety").score(None, ["You are a fucking idiot, shut up.", "Thank you so much for your kind help."])
    assert s[0] < 0.5 < s[1]


def test_readability_ranks_simple_above_convoluted():
    simple = "The cat sat on the mat. It was a sunny day. We had fun."
    convoluted = (
        "Notwithstanding the aforementioned considerations, institutional stakeholders necessitate a comprehensive "
        "reevaluation of organisational methodologies, particularly regarding interdepartmental communication."
    )
    s = O.get("readability").score(None, [simple, convoluted])
    assert 0 <= s[1] < s[0] <= 1
    assert s[0] > 0.8


@pytest.mark.parametrize("name", BUILTINS + ["length:unit=words", "length:unit=tokens"])
def test_empty_and_whitespace_responses_score(name):
    values = O.score_all([O.get(name)], ["Say something.", "Say something.", "Hi"], ["", "   \n\t", "Hello!"])
    assert values.shape == (1, 3) and np.isfinite(values).all()


def test_score_all_shape_and_strings():
    out = O.score_all(["sentiment", "length", "readability"], ["p", "q"], ["Great work!", "Bad."])
    assert out.shape == (3, 2)
    assert O.score_all(["sentiment"], None, []).shape == (1, 0)


def test_parameter_syntax_and_errors():
    assert O.parse_spec("length:unit=words,lo=0.2") == ("length", [], {"unit": "words", "lo": 0.2})
    assert O.parse_spec("hf:a/b:POS:lower=-3,upper=3") == ("hf", ["a/b", "POS"], {"lower": -3, "upper": 3})
    assert O.parse_spec("py:pkg.mod:fn") == ("py", ["pkg.mod", "fn"], {})
    obj = O.get("sentiment:lower=-0.5,upper=0.5")
    assert (obj.lower, obj.upper) == (-0.5, 0.5)
    for bad, fragment in [
        ("length:unit=bytes", "chars, words, tokens"),
        ("length:foo=1", "unknown parameter"),
        ("length:lo=2,hi=1", "lo < hi"),
        ("conciseness:scale=0", "scale"),
        ("sentiment:lower=1,upper=0", "lower < upper"),
        ("length:unit", "key=value"),
        ("", "non-empty"),
    ]:
        with pytest.raises(ObjectiveError, match=fragment):
            O.get(bad)


def test_unknown_name_lists_available():
    with pytest.raises(ObjectiveError) as err:
        O.get("lenght")
    msg = str(err.value)
    assert "'lenght'" in msg and all(n in msg for n in BUILTINS) and "did you mean 'length'" in msg


# ---------------------------------------------------------------- py:


def reward_exclamations(prompts, responses):
    """Counts exclamation marks."""
    return [float(r.count("!")) for r in responses]


reward_exclamations.upper = 5.0


def reward_wrong_count(prompts, responses):
    return [1.0] * (len(responses) + 1)


def reward_nan(prompts, responses):
    return [float("nan")] + [0.0] * (len(responses) - 1)


def reward_inf(prompts, responses):
    return np.full(len(responses), np.inf)


def reward_raises(prompts, responses):
    raise RuntimeError("boom")


def test_py_objective():
    obj = O.get(f"py:{__name__}:reward_exclamations")
    assert obj.score(["a", "b"], ["Hi!!", ""]) == [2.0, 0.0]
    assert (obj.lower, obj.upper) == (0.0, 5.0) and obj.description == "Counts exclamation marks."
    obj = O.get(f"py:{__name__}:reward_exclamations:lower=0,upper=3")
    assert obj.upper == 3.0
    # a file path works as well
    assert O.get(f"py:{__file__}:reward_exclamations").score(None, ["!"]) == [1.0]


def trl_completions_only(completions, **kwargs):
    """Written for TRL: only the completions, everything else by keyword."""
    return [float(len(c)) for c in completions]


def trl_prompts_and_completions(prompts, completions, **kwargs):
    return [float(p.startswith("Q") and c.endswith("?")) for p, c in zip(prompts, completions)]


def keyword_only(*, completions, prompts=None):
    return [float(prompts is not None and len(c) > 1) for c in completions]


def needs_more(prompts, completions, completion_ids):
    return [0.0] * len(completions)


def no_completions(a, b):
    return [0.0] * len(b)


def test_py_objectives_are_called_by_keyword_as_trl_calls_them():
    prompts, responses = ["Q one", "two"], ["ab?", "abcd"]
    assert O.get(f"py:{__name__}:trl_completions_only").score(prompts, responses) == [3.0, 4.0]
    assert O.get(f"py:{__name__}:trl_prompts_and_completions").score(prompts, responses) == [1.0, 0.0]
    assert O.get(f"py:{__name__}:keyword_only").score(prompts, responses) == [1.0, 1.0]
    assert O.get(f"py:{__name__}:reward_exclamations").score(prompts, ["!", "!!"]) == [1.0, 2.0]  # (prompts, responses)
    with pytest.raises(ObjectiveError, match="requires completion_ids"):
        O.get(f"py:{__name__}:needs_more")
    with pytest.raises(ObjectiveError, match="has no `completions`"):
        O.get(f"py:{__name__}:no_completions")


def test_py_refused_without_allow_python():
    with pytest.raises(ObjectiveError, match="config files and the command line"):
        O.get(f"py:{__name__}:reward_exclamations", allow_python=False)


def test_py_bad_module_or_function():
    with pytest.raises(ObjectiveError, match="cannot import"):
        O.get("py:no_such_module_xyz:f")
    with pytest.raises(ObjectiveError, match="no callable"):
        O.get(f"py:{__name__}:no_such_function")
    with pytest.raises(ObjectiveError, match="expected py:"):
        O.get("py:onlymodule")


@pytest.mark.parametrize(
    "fn, fragment",
    [("reward_wrong_count", "returned 3 scores for 2"), ("reward_nan", "non-finite"), ("reward_inf", "non-finite"),
     ("reward_raises", "boom")],
)
def test_score_all_validates_outputs(fn, fragment):
    bad = O.get(f"py:{__name__}:{fn}")
    with pytest.raises(ObjectiveError, match=fragment) as err:
        O.score_all([O.get("length"), bad], ["p", "q"], ["a", "b"])
    assert fn in str(err.value)


# ---------------------------------------------------------------- hf:


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertTokenizerFast,
        GPT2Config,
        GPT2ForSequenceClassification,
        PreTrainedTokenizerFast,
    )

    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    bert_tok = BertTokenizerFast.from_pretrained(str(O._minilm_dir()))
    cfg = dict(vocab_size=bert_tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=32, max_position_embeddings=64)
    two = BertForSequenceClassification(BertConfig(**cfg, num_labels=2, id2label={0: "NEG", 1: "POS"},
                                                   label2id={"NEG": 0, "POS": 1}))
    two.save_pretrained(root / "two")
    bert_tok.save_pretrained(root / "two")
    one = BertForSequenceClassification(BertConfig(**cfg, num_labels=1))
    one.save_pretrained(root / "one")
    bert_tok.save_pretrained(root / "one")

    # GPT-2 style reward model (num_labels=1) whose tokenizer has no pad token, like Ray2333's
    words = ["<unk>", "<eos>"] + "the a good bad movie is was human assistant hello : \n".split(" ")
    wl = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    wl.pre_tokenizer = pre_tokenizers.Whitespace()
    gtok = PreTrainedTokenizerFast(tokenizer_object=wl, unk_token="<unk>", eos_token="<eos>", model_max_length=32)
    gpt = GPT2ForSequenceClassification(GPT2Config(vocab_size=len(words), n_embd=16, n_layer=1, n_head=2,
                                                   n_positions=32, num_labels=1))
    gpt.save_pretrained(root / "gpt")
    gtok.save_pretrained(root / "gpt")
    return root, two, one, gpt, bert_tok


def test_hf_label_by_name_and_index(tiny_models):
    import torch

    root, two, _, _, tok = tiny_models
    prompts, responses = ["Tell me.", "Tell me.", "Hi"], ["A good movie.", "", "bad " * 100]
    by_name = O.get(f"hf:{root / 'two'}:POS")
    by_index = O.get(f"hf:{root / 'two'}:1")
    by_lower = O.get(f"hf:{root / 'two'}:pos:lower=-2,upper=2")
    assert (by_name.lower, by_name.upper) == (-5.0, 5.0) and (by_lower.lower, by_lower.upper) == (-2.0, 2.0)
    a, b = by_name.score(prompts, responses), by_index.score(prompts, responses)
    assert a == pytest.approx(b) and len(a) == 3 and all(math.isfinite(x) for x in a)
    neg = O.get(f"hf:{root / 'two'}:NEG").score(prompts, responses)
    assert neg != pytest.approx(a)
    # default input: "prompt\nresponse" as one text
    enc = tok(["Tell me.\nA good movie."], return_tensors="pt")
    with torch.no_grad():
        expected = two.eval()(**enc).logits[0, 1].item()
    assert a[0] == pytest.approx(expected, abs=1e-4)
    # the other input modes run
    for mode in ("pair", "response", "hh"):
        assert len(O.get(f"hf:{root / 'two'}:POS:input={mode}").score(prompts, responses)) == 3


def test_hf_label_required_and_checked(tiny_models):
    root = tiny_models[0]
    with pytest.raises(ObjectiveError, match="0=NEG, 1=POS"):
        O.get(f"hf:{root / 'two'}")
    with pytest.raises(ObjectiveError, match="unknown label 'MAYBE'"):
        O.get(f"hf:{root / 'two'}:MAYBE")
    with pytest.raises(ObjectiveError, match="out of range"):
        O.get(f"hf:{root / 'two'}:2")


def test_hf_single_output_reward_models(tiny_models):
    root = tiny_models[0]
    for name in ("one", "gpt"):
        obj = O.get(f"hf:{root / name}")
        assert "reward-model output" in obj.description
        out = O.score_all([obj], ["hello", "the movie"], ["a good movie", "   "])
        assert out.shape == (1, 2) and np.isfinite(out).all()
    # batching does not change the values (padding handled, incl. the pad-less GPT-2 tokenizer)
    gpt = O.get(f"hf:{root / 'gpt'}:batch_size=1")
    batched = O.get(f"hf:{root / 'gpt'}:batch_size=8")
    resp = ["good", "the movie was bad bad bad", "hello"]
    assert gpt.score(None, resp) == pytest.approx(batched.score(None, resp), abs=1e-4)


def test_hf_missing_model_error(tmp_path):
    for spec in ("hf:nobody/no-such-reward-model-xyz:POSITIVE", f"hf:{tmp_path / 'missing'}"):
        with pytest.raises(ObjectiveError) as err:
            O.get(spec)
        msg = str(err.value)
        assert spec in msg and "huggingface-cli download" in msg and "hf:/path/to/folder" in msg


def test_paper_reward_models_are_expressible():
    assert O.parse_spec("hf:lvwerra/distilbert-imdb:POSITIVE")[1] == ["lvwerra/distilbert-imdb", "POSITIVE"]
    assert O.parse_spec("hf:mohameddhiab/humor-no-humor:HUMOR")[1] == ["mohameddhiab/humor-no-humor", "HUMOR"]
    assert O.parse_spec("hf:Ray2333/gpt2-large-harmless-reward_model:input=hh") == (
        "hf", ["Ray2333/gpt2-large-harmless-reward_model"], {"input": "hh"})


def test_density_count_all_counts_content_word_tokens_and_depends_on_length_less():
    """density:count=all is lexical density (every content-word token); distinct counting falls as an answer
    repeats itself, so on the same dense sentence said twice over the distinct score halves and the token score
    stays."""
    from pama import objectives

    distinct, tokens = objectives.get("density"), objectives.get("density:count=all")
    once = "Photosynthesis converts sunlight into chemical energy stored in glucose."
    twice = once + " " + once
    d1, d2 = distinct.score([""] * 2, [once, twice])
    t1, t2 = tokens.score([""] * 2, [once, twice])
    assert d2 == pytest.approx(d1 / 2) and t2 == pytest.approx(t1) and t1 > 0.5
    assert tokens.score([""], ["the of and it is"])[0] == 0.0 and tokens.score([""], [""])[0] == 0.0
    with pytest.raises(objectives.ObjectiveError, match="count must be one of distinct, all"):
        objectives.get("density:count=some")
