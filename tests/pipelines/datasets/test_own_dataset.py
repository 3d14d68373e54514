"""A user's own datasets, added by configuration only, run end to end (dense and signed supermask)."""

from __future__ import annotations

import json

import h5py
import mlflow
import pytest
from safetensors.torch import load_file

from supermask_pipeline.images import CHECKSUMS_FILE

ONE_EPOCH = {"epochs": 1, "batch_size": 50, "show_progress": False, "device": "cpu"}


def _summary(project, method: str) -> dict:
    return json.loads((project / f"data/08_reporting/{method}/fcn/evaluation_summary.json").read_text())


def test_an_idx_dataset_by_configuration_runs_dense_and_signed_supermask(project, run_kedro):
    run_kedro("__default__", {"dataset": "digits", "data_processing": {"num_val": 100},
                              "dense": {"training": ONE_EPOCH}, "signed_supermask": {"training": ONE_EPOCH}})
    recorded = json.loads((project / "data/01_raw/digits" / CHECKSUMS_FILE).read_text())
    assert sorted(recorded["files"]) == ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
                                         "train-images-idx3-ubyte", "train-labels-idx1-ubyte"]
    with h5py.File(project / "data/03_primary/digits/train.h5") as h5:
        assert h5["images"].shape == (500, 28, 28, 1) and h5.attrs["source"] == "digits"
        digest = h5.attrs["content_sha256"]
    for method in ("dense", "signed_supermask"):
        assert 0.0 <= _summary(project, method)["test_accuracy"] <= 1.0

    # MLflow: the run's Dataset column shows the splits it trained on, digest = content checksum
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    (run,) = mlflow.search_runs(experiment_names=["supermask_pipeline"], filter_string="tags.method = 'dense'",
                                output_format="list")  # the dense method's run
    inputs = {(i.dataset.name, i.dataset.digest) for i in mlflow.get_run(run.info.run_id).inputs.dataset_inputs}
    assert ("digits/train", digest[:32]) in inputs
    assert {name for name, _ in inputs} >= {"digits/train", "digits/val"}
    assert run.data.tags["dataset"] == "digits"


def test_an_npz_dataset_of_three_classes_ends_the_fcn_with_three_units(project, run_kedro):
    run_kedro("dense", {"dataset": "shapes", "data_processing": {"num_val": 50}, "dense": {"training": ONE_EPOCH}})
    weights = load_file(next((project / "data/06_models/dense/fcn/trained_weights.safetensors").glob("*/*")))
    assert tuple(weights["fc3"].shape) == (3, 100) and tuple(weights["fc1"].shape) == (300, 784)
    assert _summary(project, "dense")["remaining_weight_count"] == 300 * 784 + 100 * 300 + 3 * 100


def test_an_unknown_dataset_lists_the_configured_ones(project, run_kedro):
    with pytest.raises(Exception, match=r"Unknown dataset 'svhn'\. Known datasets: cifar10, cifar100, digits, kmnist, mnist, shapes"):
        run_kedro("dense", {"dataset": "svhn"})


def test_a_corrupted_split_stops_the_run(project, run_kedro):
    run_kedro("data_processing", {"dataset": "digits", "data_processing": {"num_val": 100}})
    path = project / "data/03_primary/digits/val.h5"
    with h5py.File(path, "r") as h5:
        offset = h5["images"].id.get_offset()
    data = bytearray(path.read_bytes())
    data[offset + 500] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(Exception, match=r"val\.h5 is corrupt.*kedro run --pipeline=data_processing"):
        run_kedro("dense", {"dataset": "digits", "dense": {"training": ONE_EPOCH}},
                  node_names=["dense.initialise", "dense.train"])
    assert not (project / "data/06_models/dense/fcn/trained_weights.safetensors").exists()
