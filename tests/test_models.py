"""Model resolution: the tiny model in-process, the embedded model for real, and clear errors for bad specs."""
from __future__ import annotations

import pytest
import torch

from pama import models


def test_tiny_model_is_deterministic_and_batched(tiny):
    model, tok = tiny
    assert tok.padding_side == "left" and tok.pad_token is not None
    m2, _ = models.load(models.TINY_MODEL, seed=0)
    for a, b in zip(model.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    texts = models.generate(model, tok, ["Hello there", "A much longer prompt with several more words in it"],
                            max_new_tokens=6, seed=3)
    again = models.generate(model, tok, ["Hello there", "A much longer prompt with several more words in it"],
                            max_new_tokens=6, seed=3)
    assert len(texts) == 2 and texts == again


def test_left_padding_does_not_change_a_prompts_greedy_output(tiny):
    model, tok = tiny
    alone = models.generate(model, tok, ["Tell me a story."], max_new_tokens=5, temperature=0)
    padded = models.generate(model, tok, ["Tell me a story.", "x " * 40], max_new_tokens=5, temperature=0)
    assert alone[0] == padded[0]


def test_chat_template_is_applied(tiny):
    _, tok = tiny
    (wrapped,) = models.chat_prompts(tok, ["What is 2+2?"])
    assert "What is 2+2?" in wrapped and wrapped != "What is 2+2?" and "<|im_start|>assistant" in wrapped


@pytest.mark.parametrize("spec", ["no-such-org/definitely-not-a-model-xyz", "/tmp/pama-no-such-folder",
                                  "/tmp/pama-missing.gguf"])
def test_unknown_model_spec_names_the_spec(spec, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(models.ModelNotFoundError) as err:
        models.load(spec)
    assert spec in str(err.value) and "smollm2-135m" in str(err.value)


def test_local_folder_model_loads(tmp_path, tiny):
    model, tok = tiny
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, ltok = models.load(str(tmp_path))
    ids = tok(["hello world"], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(model(**ids).logits, loaded(**ids).logits, atol=1e-6)
    assert ltok.padding_side == "left"


@pytest.mark.integration
def test_embedded_model_loads_offline_and_writes_english():
    model, tok = models.load(models.DEFAULT_MODEL)
    assert models.is_cached()
    assert sum(p.numel() for p in model.parameters()) > 100e6
    (text,) = models.generate(model, tok, ["Write a short review of the movie Inception."], max_new_tokens=60,
                              temperature=0.7, seed=0)
    words = text.split()
    assert len(words) >= 15 and len({w.lower() for w in words}) / len(words) > 0.5, text
    common = {"the", "a", "is", "and", "of", "to", "in", "it", "film", "movie", "inception"}
    assert sum(w.lower().strip(".,!") in common for w in words) >= 4, text


def test_random_spec_builds_the_architecture_with_fresh_weights(tmp_path, tiny):
    model, tok = tiny
    model.config.save_pretrained(tmp_path)  # config and tokenizer only: no weights travel
    tok.save_pretrained(tmp_path)
    fresh, ftok = models.load(f"random:{tmp_path}", seed=1)
    assert fresh.config.num_hidden_layers == model.config.num_hidden_layers
    assert sum(p.numel() for p in fresh.parameters()) == sum(p.numel() for p in model.parameters())
    assert not torch.equal(next(fresh.parameters()), next(model.parameters()))
    assert ftok.padding_side == "left"
