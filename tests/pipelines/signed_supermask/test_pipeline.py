"""The whole signed_supermask pipeline on a tiny generated MNIST-format set, in a temporary project."""

from __future__ import annotations

import json

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from supermask_pipeline.models import count_weights, get_architecture

from ..conftest import FAST_TRAINING, mtimes, versions

PARAMS = {"signed_supermask": {"training": FAST_TRAINING}}


def _latest(folder):
    return load_file(next(iter(sorted(folder.glob("*/*.safetensors"))[-1:])))


def test_signed_supermask_end_to_end_then_rerun_from_training(project, run_kedro):
    run_kedro("signed_supermask", PARAMS)

    # Data processing: splits of 24 / 6 / 12 images.
    for split, n in (("train", 24), ("val", 6), ("test", 12)):
        assert (project / "data" / "03_primary" / "mnist" / f"{split}.h5").is_file(), split
    models = project / "data" / "06_models" / "signed_supermask" / "fcn"
    features = project / "data" / "04_feature" / "signed_supermask" / "fcn"
    assert len(versions(features / "initial_weights.safetensors")) == 1

    # Masks are signed, the pruned weights are W ⊙ S of the frozen signed-constant weights.
    masks = _latest(models / "masks.safetensors")
    initial = _latest(features / "initial_weights.safetensors")
    pruned = _latest(models / "trained_weights.safetensors")
    assert set(masks) == {"fc1", "fc2", "fc3"}
    for name, mask in masks.items():
        assert mask.dtype == torch.int8
        assert set(mask.unique().tolist()) <= {-1, 0, 1}
        assert torch.equal(pruned[name], initial[name] * mask.float())

    summary = json.loads((project / "data" / "08_reporting" / "signed_supermask" / "fcn" / "evaluation_summary.json").read_text())
    kept = sum(int(m.count_nonzero()) for m in masks.values())
    assert summary["remaining_weight_count"] == kept
    assert summary["positive_weight_count"] + summary["negative_weight_count"] == kept
    assert summary["negative_weight_count"] == sum(int((m == -1).sum()) for m in masks.values())
    assert summary["remaining_weights"] == pytest.approx(kept / count_weights(get_architecture("fcn")))
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert [row["layer"] for row in summary["per_layer"]] == ["fc1", "fc2", "fc3", "total"]
    for plot in ("training_curves.png", "remaining_weights_per_layer.png"):
        assert (project / "data" / "08_reporting" / "signed_supermask" / "fcn" / plot).stat().st_size > 1000

    # MLflow, read back through the client: params, one step per epoch, final metrics, tags.
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client = MlflowClient()
    (run,) = mlflow.search_runs(experiment_names=["supermask_pipeline"], filter_string="tags.method = 'signed_supermask'",
                                output_format="list")  # the method's run, nested under the pipeline's
    assert run.data.params["defaults.training.learning_rate"] == "None"  # from the preset:
    assert run.data.params["signed_supermask.presets.fcn.learning_rate"] == "0.05"
    assert run.data.params["signed_supermask.effective_training.learning_rate"] == "0.05"
    assert run.data.params["signed_supermask.effective_training.epochs"] == "2"
    assert run.data.params["signed_supermask.method.threshold_factor"] == "0.4"
    assert run.data.tags["method"] == "signed_supermask"
    assert run.data.tags["architecture"] == "fcn"
    assert run.data.tags["seed"] == "0"
    history = client.get_metric_history(run.info.run_id, "signed_supermask.val_accuracy")
    assert sorted(m.step for m in history) == [1, 2]
    assert run.data.metrics["signed_supermask.test_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert run.data.metrics["signed_supermask.remaining_weights"] == pytest.approx(summary["remaining_weights"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "signed_supermask/fcn")}
    assert "signed_supermask/fcn/training_curves.png" in artifacts

    # Rerun from the training node: splits and initial weights are reused, not rewritten;
    # same seed on the same machine gives the identical mask.
    splits_before = mtimes(project / "data" / "03_primary")
    run_kedro("signed_supermask", PARAMS, from_nodes=["signed_supermask.train"])
    assert mtimes(project / "data" / "03_primary") == splits_before
    assert len(versions(features / "initial_weights.safetensors")) == 1
    assert len(versions(models / "masks.safetensors")) == 2
    rerun_masks = _latest(models / "masks.safetensors")
    assert all(torch.equal(rerun_masks[k], masks[k]) for k in masks)
    rerun = json.loads((project / "data" / "08_reporting" / "signed_supermask" / "fcn" / "evaluation_summary.json").read_text())
    assert rerun["test_accuracy"] == summary["test_accuracy"]
    assert rerun["remaining_weight_count"] == summary["remaining_weight_count"]


def test_unknown_method_fails_with_the_choices(project, run_kedro):
    with pytest.raises(ValueError, match="Known methods: aslp, bernoulli, dense, edge_popup, fixed_mask, signed_supermask, threshold"):
        run_kedro("signed_supermask", {"signed_supermask": {"method": {"name": "supermagic"}, "training": FAST_TRAINING}})


def test_unknown_architecture_fails_with_the_choices(project, run_kedro):
    with pytest.raises(ValueError, match="Known architectures: conv2, conv4, conv6, conv8, fcn"):
        run_kedro("signed_supermask", {"model": {"architecture": "vgg19"}, "signed_supermask": {"training": FAST_TRAINING}})
