"""The training nodes' parameter handling: per-architecture presets."""

import pytest

from supermask_pipeline.pipelines.training.nodes import training_config

PRESETS = {"fcn": {"learning_rate": 0.05, "epochs": 100}, "conv2": {"learning_rate": 0.04, "epochs": 100}}


def test_null_values_come_from_the_architecture_preset():
    config = training_config({"learning_rate": None, "epochs": None, "device": "cpu"}, PRESETS, "conv2", seed=3)
    assert (config.learning_rate, config.epochs, config.seed) == (0.04, 100, 3)


def test_a_value_set_in_training_wins_over_the_preset():
    config = training_config({"learning_rate": 0.1, "epochs": None, "device": "cpu"}, PRESETS, "conv2")
    assert (config.learning_rate, config.epochs) == (0.1, 100)


def test_missing_preset_is_named():
    with pytest.raises(ValueError, match=r"presets has no entry 'conv6'; known presets: \['conv2', 'fcn'\]"):
        training_config({"learning_rate": None, "device": "cpu"}, PRESETS, "conv6")
    with pytest.raises(ValueError, match=r"training.batch_size is null and presets.fcn has no batch_size"):
        training_config({"batch_size": None, "device": "cpu"}, PRESETS, "fcn")
