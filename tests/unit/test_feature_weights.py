"""``model.feature_weights``: from the settings to the engine's distances, and kept by a checkpoint."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from models.features import FEATURE_INDEX
from models.segments.engine import SegmentEngine
from stream.config import load
from stream.runtime.engines import engine_params, load_engine, new_engine
from stream.state import MemoryFeatureStore

SMALL = {"warmup_vectors": 300, "update_every": 300, "warmup_days": 0}


def built_engine(weights: dict[str, float]) -> SegmentEngine:
    """A model version fitted on random rows, with these weights."""
    settings = load(overrides={"model": {**SMALL, "feature_weights": weights}})
    engine = new_engine(settings)
    rng = np.random.default_rng(0)
    raw = np.abs(rng.normal(1.0, 0.5, (600, len(FEATURE_INDEX))))
    engine.process(raw, np.arange(600.0) * 3600)
    assert engine.warmed_up
    return engine


def test_a_weight_reaches_the_engine_and_zero_leaves_the_feature_out() -> None:
    engine = built_engine({"recency_days": 0.0, "spend": 2.0})
    w = engine.vectorizer.weights
    assert w[FEATURE_INDEX["recency_days"]] == 0.0 and w[FEATURE_INDEX["spend"]] == 2.0
    assert w[FEATURE_INDEX["aov"]] == 1.0
    row = np.ones((2, len(FEATURE_INDEX)))
    row[1, FEATURE_INDEX["recency_days"]] = 400.0  # only the left-out feature differs
    a = engine.assign(row)
    assert np.array_equal(a.distances[0], a.distances[1])
    row[1, FEATURE_INDEX["spend"]] = 400.0  # a weighted one does count
    b = engine.assign(row)
    assert not np.array_equal(b.distances[0], b.distances[1])


def test_weights_are_part_of_the_settings_printout_and_hash() -> None:
    settings = load(overrides={"model": {"feature_weights": {"spend": 0.5, "aov": 2.0}}})
    assert settings.model.feature_weights == (("aov", 2.0), ("spend", 0.5))
    assert settings.model_dump(mode="json")["model"]["feature_weights"] == {"aov": 2.0, "spend": 0.5}
    assert engine_params(settings).feature_weights == (("aov", 2.0), ("spend", 0.5))
    assert hash(settings) == hash(load(overrides={"model": {"feature_weights": {"aov": 2.0, "spend": 0.5}}}))


def test_a_checkpoint_keeps_its_weights_and_says_the_settings_differ(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryFeatureStore()
    built = built_engine({"engagement_trend": 0.5})
    store.save_model(built.snapshot(), built.version)
    changed = load(overrides={"model": {**SMALL, "feature_weights": {"engagement_trend": 0.9}}})
    with caplog.at_level(logging.WARNING, logger="stream.runtime.service"):
        restored = load_engine(changed, store)
    assert restored.params.feature_weights == (("engagement_trend", 0.5),)
    assert restored.vectorizer.weights[FEATURE_INDEX["engagement_trend"]] == 0.5
    assert "feature_weights" in caplog.text and "replay" in caplog.text

    caplog.clear()
    same = load(overrides={"model": {**SMALL, "feature_weights": {"engagement_trend": 0.5}}})
    with caplog.at_level(logging.WARNING, logger="stream.runtime.service"):
        load_engine(same, store)
    assert caplog.text == ""


def test_a_checkpoint_built_on_other_half_lives_follows_the_settings_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The state decays with the settings' half-lives, so the restored engine ages its population
    sample with them too (not with the checkpoint's), and the log says the model was built on
    others."""
    store = MemoryFeatureStore()
    built = built_engine({})
    assert built.feature_params.channel_half_life_days == 90.0
    store.save_model(built.snapshot(), built.version)
    changed = load(overrides={"model": SMALL, "features": {"channel_half_life_days": 30.0}})
    with caplog.at_level(logging.WARNING, logger="stream.runtime.service"):
        restored = load_engine(changed, store)
    assert restored.feature_params == changed.features.params()
    assert "channel_half_life_days: 90.0 (settings: 30.0)" in caplog.text and "replay" in caplog.text
