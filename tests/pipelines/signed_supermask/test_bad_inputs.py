"""Malformed parameters and damaged weight files: a clear error, and nothing on disk changes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ..conftest import FAST_TRAINING

PARAMS = {"signed_supermask": {"training": FAST_TRAINING}}
FROM_TRAIN = {"from_nodes": ["signed_supermask.train"]}


def _checksums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _merge(overrides: dict) -> dict:
    method = {**PARAMS["signed_supermask"], **overrides.get("signed_supermask", {})}
    method["training"] = {**FAST_TRAINING, **overrides.get("signed_supermask", {}).get("training", {})}
    return {**overrides, "signed_supermask": method}


BAD_PARAMETERS = [
        ({"signed_supermask": {"training": {"learning_rate": -1}}}, FROM_TRAIN,
         r"training.learning_rate must be a positive number, got -1"),
        ({"signed_supermask": {"training": {"epochs": "ten"}}}, FROM_TRAIN,
         r"training.epochs must be a positive integer, got 'ten'"),
        ({"signed_supermask": {"training": {"lr_decay_rate": 1.5}}}, FROM_TRAIN,
         r"training.lr_decay_rate must lie in \(0, 1\], got 1.5"),
        ({"signed_supermask": {"training": {"optimiser": "sgd"}}}, FROM_TRAIN,
         r"Unknown training parameter\(s\) \['optimiser'\]"),
        ({"signed_supermask": {"training": {"checkpoint_every": 0.5}}}, FROM_TRAIN,
         r"training.checkpoint_every must be an integer ≥ 0"),
        ({"signed_supermask": {"method": {"threshold": None, "threshold_factor": 1.5}}}, FROM_TRAIN,
         r"threshold_factor.*\(0, 1\).*1.5"),
        ({"signed_supermask": {"method": {"name": "signed_supermask_v2"}}}, FROM_TRAIN,
         r"signed_supermask_v2.*signed_supermask"),
        ({"signed_supermask": {"data": {"normalisation": "zscore"}}}, FROM_TRAIN,
         r"zscore.*per_image_standardisation"),
        ({"seed": -3}, FROM_TRAIN, r"seed must be an integer ≥ 0, got -3"),
        ({"model": {"architecture": "resnet50"}}, {"from_nodes": ["signed_supermask.initialise"]},
         r"resnet50.*fcn"),
        ({"signed_supermask": {"init": {"weight_init": "he"}}}, {"from_nodes": ["signed_supermask.initialise"]},
         r"'he'.*signed_constant"),
]


def test_malformed_parameters_are_named_and_change_nothing(project, run_kedro):
    # One trained project for all cases (a pipeline run per case would take minutes).
    run_kedro("signed_supermask", PARAMS)
    before = _checksums(project / "data")
    for overrides, run_kwargs, message in BAD_PARAMETERS:
        with pytest.raises(Exception, match=message):
            run_kedro("signed_supermask", _merge(overrides), **run_kwargs)
        assert _checksums(project / "data") == before, overrides


def _latest_version(folder: Path) -> Path:
    return sorted(folder.glob("*/*.safetensors"))[-1]


DAMAGES = [
        ("nan", r"contain 1 NaN and 0 infinite|NaN"),
        ("inf", r"infinite|inf"),
        ("shape", r"fc2.*\(100, 300\).*\(100, 299\)|\(100, 299\).*\(100, 300\)"),
        ("missing", r"fc3"),
        ("dtype", r"float|dtype"),
        ("truncated", r"safetensors"),
]


def test_damaged_initial_weights_are_named_and_change_nothing(project, run_kedro):
    run_kedro("signed_supermask", PARAMS)
    path = _latest_version(project / "data" / "04_feature" / "signed_supermask" / "fcn" / "initial_weights.safetensors")
    original = path.read_bytes()
    for damage, message in DAMAGES:
        path.write_bytes(original)
        _damage(path, damage)
        before = _checksums(project / "data")
        with pytest.raises(Exception, match=message) as info:
            run_kedro("signed_supermask", PARAMS, **FROM_TRAIN)
        assert str(path) in str(info.value), (damage, str(info.value))
        assert _checksums(project / "data") == before, damage


def _damage(path: Path, damage: str) -> None:
    tensors = load_file(path)
    if damage == "nan":
        tensors["fc1"][0, 0] = float("nan")
    elif damage == "inf":
        tensors["fc2"][1, 1] = float("inf")
    elif damage == "shape":
        tensors["fc2"] = tensors["fc2"][:, :299].contiguous()
    elif damage == "missing":
        del tensors["fc3"]
    elif damage == "dtype":
        tensors["fc1"] = tensors["fc1"].to(torch.int32)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    else:
        save_file(tensors, path)
