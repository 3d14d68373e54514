"""validate_run: every method's parameters parsed in full before anything runs; parameter_digest."""

from __future__ import annotations

import copy

import pytest

from supermask_pipeline.experiment import ParameterError
from supermask_pipeline.experiment.config import parameter_digest, validate_run

from .test_config import load_parameters


@pytest.fixture(scope="module")
def params() -> dict:
    return load_parameters()


def _with(params: dict, path: str, value) -> dict:
    changed = copy.deepcopy(params)
    *parents, key = path.split(".")
    target = changed
    for part in parents:
        target = target.setdefault(part, {})
    target[key] = value
    return changed


def test_the_committed_parameters_of_the_default_methods_validate(params):
    configs = validate_run(params, ["signed_supermask", "dense"])
    assert list(configs) == ["dense", "signed_supermask"]
    assert configs["dense"].training.learning_rate > 0 and configs["dense"].model.dataset == "mnist"


@pytest.mark.parametrize(("path", "value", "message"), [
    ("dense.training.learning_rate", -1, r"dense\.training\.learning_rate must be a positive number, got -1"),
    ("dense.training.optimiser", "sgd", r"Unknown training parameter\(s\) \['optimiser'\]"),
    ("dense.training.lr_decay_rate", "fast", r"dense\.training\.lr_decay_rate must be a finite number, got 'fast'"),
    ("dense.training.momentum", float("nan"), r"dense\.training\.momentum must be a finite number"),
    ("model.architecture", "resnet50", r"resnet50.*fcn"),
    ("dataset", "nosuch", r"Unknown dataset 'nosuch'"),
    ("model.architecture", "conv8", r"mnist.*28×28.*conv8"),  # auto → cifar10 fits; mnist does not (below)
])
def test_a_bad_parameter_of_any_part_is_named(params, path, value, message):
    bad = _with(params, path, value)
    if value == "conv8":
        bad["dataset"] = "mnist"
    with pytest.raises(ParameterError, match=message):
        validate_run(bad, ["dense"])


def test_only_the_methods_asked_for_are_parsed(params):
    bad = _with(params, "bernoulli.training.learning_rate", -1)
    assert list(validate_run(bad, ["dense"])) == ["dense"]
    with pytest.raises(ParameterError, match="bernoulli"):
        validate_run(bad, ["dense", "bernoulli"])


def test_the_digest_follows_the_method_and_shared_parameters_only(params):
    digest = parameter_digest(params, "dense")
    assert parameter_digest(copy.deepcopy(params), "dense") == digest
    assert parameter_digest(_with(params, "signed_supermask.training.epochs", 3), "dense") == digest
    for path in ("dense.training.epochs", "defaults.training.device", "seed", "model.architecture"):
        assert parameter_digest(_with(params, path, 7), "dense") != digest, path
