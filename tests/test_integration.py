"""Integration: the real embedded model learns. Asserts on the trend of the preferred objective, never on time."""
from __future__ import annotations

import numpy as np
import pytest

from pama import trainer
from pama.config import TrainConfig

pytestmark = pytest.mark.integration

PROMPTS = ["Write a short review of the movie Inception.", "Describe your last weekend.",
           "What do you think about Mondays?", "Tell me about the weather today."]


def test_embedded_model_raises_the_preferred_objective(store, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS))
    cfg = TrainConfig(model="smollm2-135m", objectives=["sentiment", "conciseness"], preference=[0.9, 0.1],
                      method="pama", anchor=0.5, steps=12, batch_size=16, max_new_tokens=16, learning_rate=3e-3,
                      kl_coef=0.05, target_kl=0.0, missing_eos_penalty=0.0, prompts=str(prompts), seed=0,
                      save_every=100)
    run_id = trainer.train(cfg, store, progress=False)
    assert store.get_run(run_id)["status"] == "finished"
    rewards = [m["value"] for m in store.metrics(run_id, keys=["rewards/sentiment/mean"])]
    assert len(rewards) == 12
    # step 1 samples the untrained policy; the rest must sit clearly above it. Not a trend test: at 16 responses a
    # step the batch means swing once risen, and how depends on the CPU's rounding (the earlier trend check passed on
    # an AVX-512 EPYC and failed on a Xeon, whose means rose from 0.18 to 0.48 by step 4, then swung between 0.14 and
    # 0.45). The missing-EOS penalty is off: at a 16-token limit it hits nearly every answer and mixes in stopping.
    assert np.mean(rewards[1:]) > rewards[0] + 0.1, rewards
