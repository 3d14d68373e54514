"""The learned supermasks and fine-tuning, each a namespace over the one method template, on a
tiny generated MNIST-format set: every strategy, 1 epoch."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

from supermask_pipeline.images.normalisation import split_to_tensors
from supermask_pipeline.datasets import HDF5SplitDataset
from supermask_pipeline.experiment import merge
from supermask_pipeline.masks import DenseStrategy
from supermask_pipeline.models import MaskedNetwork, get_architecture, layer_specs
from supermask_pipeline.models.network import rescale_factor, transform_weight
from supermask_pipeline.training import TensorDataset, evaluate

from ..conftest import FAST_TRAINING

TRAINING = {**FAST_TRAINING, "epochs": 1}
STOCHASTIC = {"bernoulli", "aslp"}
SAMPLED_METRICS = (
    "sampled_test_accuracy_mean", "sampled_test_accuracy_std", "sampled_test_loss_mean", "sampled_test_loss_std",
)


def _params(strategy: str, **recipe) -> dict:
    return {strategy: {"training": TRAINING, **recipe}}


def _block(project, method: str) -> dict:
    """The method's committed block merged over the shared defaults, as the run sees it."""
    defaults = yaml.safe_load((project / "conf/base/parameters.yml").read_text())["defaults"]
    block = yaml.safe_load((project / f"conf/base/parameters_{method}.yml").read_text())[method]
    return merge(defaults, block)


def _latest(folder):
    return load_file(sorted(folder.glob("*/*.safetensors"))[-1])


def _run(project, method):
    """The MLflow run of ``method`` (one per method, nested under the pipeline's run)."""
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    (run,) = mlflow.search_runs(experiment_names=["supermask_pipeline"], filter_string=f"tags.method = '{method}'",
                                output_format="list")
    return run


def _dense_accuracy(project, weights, normalisation: str) -> float:
    """Test accuracy of a plain dense ReLU network of ``weights`` (no mask, no transform)."""
    test = HDF5SplitDataset(str(project / "data/03_primary/mnist/test.h5")).load()
    train = HDF5SplitDataset(str(project / "data/03_primary/mnist/train.h5")).load()
    images, labels = split_to_tensors(test, normalisation, reference=train)
    network = MaskedNetwork(get_architecture("fcn"), DenseStrategy(), weights, activation="relu")
    return evaluate(network, TensorDataset(images, labels))["accuracy"]


@pytest.mark.parametrize("strategy", ["bernoulli", "threshold", "edge_popup", "aslp"])
def test_every_strategy_prunes_tests_and_reports(project, run_kedro, strategy):
    # ASLP with its learnable per-layer scales, so that the pruned weights carry them.
    extra = {"method": {"learn_scale": True}} if strategy == "aslp" else {}
    run_kedro(strategy, _params(strategy, **extra))
    recipe = _block(project, strategy)
    method = {**recipe["method"], **extra.get("method", {})}
    spec = get_architecture("fcn")
    features = project / "data/04_feature" / strategy / "fcn"
    models = project / "data/06_models" / strategy / "fcn"
    reports = project / "data/08_reporting" / strategy / "fcn"

    # The mask is int8 0/1; its per-layer counts are those of the summary and the CSV.
    masks = _latest(models / "masks.safetensors")
    assert set(masks) == {"fc1", "fc2", "fc3"}
    assert all(m.dtype == torch.int8 and set(m.unique().tolist()) <= {0, 1} for m in masks.values())
    kept = {name: int(m.sum()) for name, m in masks.items()}
    table = pd.read_csv(reports / "remaining_weights_per_layer.csv").set_index("layer")
    summary = json.loads((reports / "evaluation_summary.json").read_text())
    assert {name: int(table.loc[name, "remaining"]) for name in kept} == kept
    assert {row["layer"]: row["remaining"] for row in summary["per_layer"] if row["layer"] != "total"} == kept
    assert summary["remaining_weight_count"] == sum(kept.values()) == int(table.loc["total", "remaining"])
    assert summary["method"] == strategy
    if strategy == "edge_popup":  # exactly round(k · numel) kept in every layer
        assert kept == {layer.name: round(0.5 * layer.num_weights) for layer in layer_specs(spec)}

    # The saved pruned network is weights ⊙ mask (transformed, rescaled, scaled as the recipe says).
    initial = _latest(features / "initial_weights.safetensors")
    pruned = _latest(models / "trained_weights.safetensors")
    sampled = json.loads((reports / "sampled_evaluation.json").read_text())
    for layer in layer_specs(spec):
        mask = masks[layer.name].float()
        expected = transform_weight(initial[layer.name], layer, method["weight_transform"]) * mask
        if method["rescale"]:
            expected = expected * rescale_factor(mask)
        if strategy == "aslp":
            expected = expected * sampled["learned_scales"][layer.name]
        assert bool((pruned[layer.name][mask == 0] == 0).all())
        torch.testing.assert_close(pruned[layer.name], expected, rtol=1e-5, atol=1e-7)

    # Prune and test: a plain dense network of the saved weights gives the logged accuracy.
    accuracy = _dense_accuracy(project, pruned, recipe["data"]["normalisation"])
    assert summary["test_accuracy"] == pytest.approx(accuracy)
    run = _run(project, strategy)
    assert run.data.metrics[f"{strategy}.test_accuracy"] == pytest.approx(accuracy)
    assert run.data.metrics[f"{strategy}.remaining_weight_count"] == sum(kept.values())
    assert run.data.tags["method"] == strategy
    assert run.data.params[f"{strategy}.method.name"] == strategy
    assert run.data.params[f"{strategy}.effective_training.epochs"] == "1"
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, f"{strategy}.val_accuracy")
    assert [m.step for m in history] == [1]

    # Sampled masks: mean ± std over 10 for the stochastic strategies, nothing for the others.
    assert sampled["method"] == strategy
    assert sampled["stochastic"] is (strategy in STOCHASTIC)
    if strategy in STOCHASTIC:
        assert sampled["samples"] == 10
        for name in SAMPLED_METRICS:
            assert run.data.metrics[f"{strategy}.{name}"] == pytest.approx(sampled[name])
        assert 0.0 <= sampled["sampled_test_accuracy_mean"] <= 1.0
        assert sampled["sampled_test_accuracy_std"] >= 0.0
    else:
        assert sampled["samples"] == 0
        assert not any(f"{strategy}.{name}" in run.data.metrics for name in SAMPLED_METRICS)

    assert (reports / "training_curves.png").stat().st_size > 1000
    assert (project / "data/07_model_output" / strategy / "fcn/training_history.csv").is_file()
    assert not (project / "data/06_models/fine_tune").exists()  # only the fine_tune pipeline fine-tunes


def test_fine_tuning_trains_only_the_kept_weights(project, run_kedro):
    params = {**_params("threshold"), "fine_tune": {"training": {**TRAINING, "learning_rate": 1e-3}}}
    run_kedro("fine_tune", params)
    source = project / "data/06_models/threshold/fcn"
    models = project / "data/06_models/fine_tune/fcn"
    masks = _latest(source / "masks.safetensors")
    pruned = _latest(source / "trained_weights.safetensors")
    tuned = _latest(models / "trained_weights.safetensors")
    assert all(torch.equal(_latest(models / "masks.safetensors")[name], mask) for name, mask in masks.items())
    for name, mask in masks.items():
        kept = mask == 1
        assert bool((tuned[name][~kept] == 0).all())  # pruned weights stay exactly 0
        assert not torch.equal(tuned[name][kept], pruned[name][kept])  # kept weights trained
    summary = json.loads((project / "data/08_reporting/fine_tune/fcn/evaluation_summary.json").read_text())
    before = json.loads((project / "data/08_reporting/threshold/fcn/evaluation_summary.json").read_text())
    accuracy = _dense_accuracy(project, tuned, "scale_01")
    assert summary["test_accuracy"] == pytest.approx(accuracy)
    assert summary["remaining_weight_count"] == before["remaining_weight_count"]
    run = _run(project, "fine_tune")
    assert run.data.metrics["fine_tune.test_accuracy"] == pytest.approx(accuracy)
    assert _run(project, "threshold").data.metrics["threshold.test_accuracy"] == pytest.approx(before["test_accuracy"])
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "fine_tune.val_accuracy")
    assert [m.step for m in history] == [1]
    assert len(pd.read_csv(project / "data/07_model_output/fine_tune/fcn/training_history.csv")) == 1


def test_an_unknown_strategy_is_named_before_anything_is_written(project, run_kedro):
    with pytest.raises(ValueError, match="Unknown method 'supermagic'. Known methods: "
                                         "aslp, bernoulli, dense, edge_popup, fixed_mask, signed_supermask, threshold"):
        run_kedro("threshold", {"threshold": {"method": {"name": "supermagic"}}})
    assert not (project / "data/03_primary").exists() and not (project / "data/04_feature").exists()
