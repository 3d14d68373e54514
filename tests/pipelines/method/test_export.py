"""The template's export and log_model nodes in a whole run (dense and signed supermask, the default
pipeline: one MLflow run holding both models), on the tiny generated MNIST-format set."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from supermask_pipeline import export
from supermask_pipeline.datasets import HDF5SplitDataset

from ..conftest import FAST_TRAINING, versions

TRAINING = {**FAST_TRAINING, "epochs": 1}
MODES = {"dense": "float32", "signed_supermask": "initial"}


def _latest(folder, suffix):
    return sorted(folder.glob(f"*/*{suffix}"))[-1]


def test_every_method_exports_its_network_and_logs_it_as_an_mlflow_model(project, run_kedro):
    run_kedro("__default__", {"dense": {"training": TRAINING}, "signed_supermask": {"training": TRAINING}})
    test = HDF5SplitDataset(str(project / "data/03_primary/mnist/test.h5")).load()
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = {r.data.tags.get("method"): r for r in mlflow.search_runs(experiment_names=["supermask_pipeline"],
                                                                     output_format="list")}
    model_ids = set()
    for method, mode in MODES.items():
        run = runs[method]  # each method's own MLflow run, nested under the pipeline's
        models = project / "data/06_models" / method / "fcn"
        reports = project / "data/08_reporting" / method / "fcn"
        # The compact file, in the trained weights' version folder, reproduces them bit for bit.
        compact = _latest(models / "network.smnet", ".smnet")
        assert versions(models / "network.smnet") == versions(models / "trained_weights.safetensors")
        network = export.read(compact)
        trained = load_file(_latest(models / "trained_weights.safetensors", ".safetensors"))
        for name, weight in trained.items():
            assert torch.equal(network.weights[name].view(torch.int32), weight.view(torch.int32)), (method, name)
        assert {e["values"]["mode"] for e in network.header["layers"]} == {mode}
        assert network.metadata == {"method": method, "seed": 0, "dataset": "mnist"}

        # The reloaded network's test accuracy is prune-and-test's; sizes are logged to MLflow.
        summary = json.loads((reports / "export_summary.json").read_text())
        evaluation = json.loads((reports / "evaluation_summary.json").read_text())
        assert summary["test_accuracy"] == evaluation["test_accuracy"]
        assert summary["weights_identical"] == "bits" and summary["compact_bytes"] == compact.stat().st_size
        assert run.data.metrics[f"{method}.export.compact_bytes"] == compact.stat().st_size
        assert run.data.metrics[f"{method}.export.test_accuracy"] == evaluation["test_accuracy"]
        assert run.data.metrics[f"{method}.export.ratio"] == pytest.approx(4 * 266_200 / compact.stat().st_size)

        # The ONNX file gives the same classes.
        ort = pytest.importorskip("onnxruntime")
        images = export.normalise_pixels(test.images, network.input)
        with torch.no_grad():
            logits = network.module()(images).numpy()
        session = ort.InferenceSession(_latest(models / "network.onnx", ".onnx").read_bytes(),
                                       providers=["CPUExecutionProvider"])
        (onnx_logits,) = session.run(["logits"], {"images": images.numpy()})
        assert np.array_equal(onnx_logits.argmax(1), logits.argmax(1))

        # The MLflow model of this method (models:/<id>) predicts the network's logits from raw pixels.
        record = json.loads((models / "mlflow_model.json").read_text())
        assert record["logged"] and record["run_id"] == run.info.run_id and record["method"] == method
        predicted = mlflow.pyfunc.load_model(record["model_uri"]).predict(test.images)
        assert np.array_equal(predicted, logits)
        assert mlflow.get_logged_model(record["model_id"]).tags["method"] == method
        model_ids.add(record["model_id"])

    # Each is the model of its method's run.
    logged = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    assert {m.model_id for m in logged if m.source_run_id in {runs[m_].info.run_id for m_ in MODES}} == model_ids
    newest = max(logged, key=lambda m: m.creation_timestamp)
    loaded = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    assert loaded.metadata.model_id == newest.model_id
    assert loaded.predict(test.images[:3]).shape == (3, 10)
