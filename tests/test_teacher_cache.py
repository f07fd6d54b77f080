"""The teacher cache pays the teacher once per comparison without changing a single weight."""

from __future__ import annotations

import json

import pytest
import torch

from guidegap.checkpoints import read_checkpoint
from guidegap.errors import InputError
from guidegap.training.config import TrainConfig
from guidegap.training.loop import train


def _run(tmp_path, name: str, objective: str = "dash", cache: str | None = None, seed: int = 0, steps: int = 12):
    config = TrainConfig(out=str(tmp_path / name), tier="oracle", teacher="oracle", objective=objective, train_steps=steps,
                         batch_size=32, checkpoint_every=steps, progress=False, seed=seed, teacher_cache=cache)
    return read_checkpoint(train(config).checkpoint)


def _same_weights(a, b) -> bool:
    return all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)


def test_cached_runs_equal_uncached_runs_bit_for_bit(tmp_path):
    cache = str(tmp_path / "cache")
    plain = _run(tmp_path, "plain", "composite")
    filling = _run(tmp_path, "filling", "composite", cache)  # computes and stores every step
    assert len(list((tmp_path / "cache").glob("step*.safetensors"))) == 12
    reused = _run(tmp_path, "reused", "composite", cache)  # loads every step
    other_objective = _run(tmp_path, "dash-cached", "dash", cache)
    dash = _run(tmp_path, "dash", "dash")
    assert _same_weights(plain, filling) and _same_weights(plain, reused)
    assert _same_weights(other_objective, dash), "one cache serves every objective of a comparison"


def test_a_cache_made_for_other_settings_is_refused(tmp_path):
    cache = str(tmp_path / "cache")
    _run(tmp_path, "first", cache=cache, steps=2)
    with pytest.raises(InputError, match="seed"):
        _run(tmp_path, "other-seed", cache=cache, seed=1, steps=2)
    manifest = tmp_path / "cache" / "cache.json"
    key = json.loads(manifest.read_text())
    (tmp_path / "cache2").mkdir()
    (tmp_path / "cache2" / "cache.json").write_text(json.dumps(key))
    # a step file from another batch (here: another seed's step 0) is detected, not trained on
    _run(tmp_path, "seed1", cache=str(tmp_path / "cache3"), seed=1, steps=1)
    (tmp_path / "cache3" / "step0000000_rank000.safetensors").replace(tmp_path / "cache2" / "step0000000_rank000.safetensors")
    with pytest.raises(InputError, match="another batch"):
        _run(tmp_path, "mismatch", cache=str(tmp_path / "cache2"), steps=1)
