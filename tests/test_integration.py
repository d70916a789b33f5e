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
                      kl_coef=0.05, target_kl=0.0, prompts=str(prompts), seed=0, save_every=100)
    run_id = trainer.train(cfg, store, progress=False)
    assert store.get_run(run_id)["status"] == "finished"
    rewards = [m["value"] for m in store.metrics(run_id, keys=["rewards/sentiment/mean"])]
    assert len(rewards) == 12
    slope = np.polyfit(np.arange(12), rewards, 1)[0]
    assert np.mean(rewards[-4:]) > np.mean(rewards[:4]) and slope > 0, rewards
