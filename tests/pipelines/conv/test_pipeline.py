"""Dense and signed supermask on Conv2/4/6/8 with a tiny generated CIFAR-10-format archive."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from supermask_pipeline.images.specs import RAW_SOURCES
from supermask_pipeline.datasets import HDF5SplitDataset
from supermask_pipeline.models import count_weights, get_architecture, layer_specs
from tests.images.cifar_format import make_cifar_spec, random_batch, write_cifar_archive

ONE_EPOCH = {"epochs": 1, "batch_size": 8, "show_progress": False, "device": "cpu"}


@pytest.fixture
def cifar_project(project, monkeypatch):
    """The temporary project with raw_images pointing at a tiny CIFAR-10-format archive
    (2 training batches of 10 images, a test batch of 10), checked by the real parsing code."""
    rng = np.random.default_rng(0)
    train_batches = [random_batch(10, rng, 0), random_batch(10, rng, 10)]
    test_batch = random_batch(10, rng, 20)
    root = project / "data" / "01_raw" / "tiny_cifar10"
    archive = write_cifar_archive(root, train_batches, test_batch)
    spec = make_cifar_spec(train_batches, test_batch, archive)
    monkeypatch.setitem(RAW_SOURCES, spec.name, spec)
    catalog = yaml.safe_load((project / "conf" / "local" / "catalog.yml").read_text())
    catalog["raw_images"].update(source=spec.name, root="data/01_raw/tiny_cifar10")
    (project / "conf" / "local" / "catalog.yml").write_text(yaml.safe_dump(catalog))
    return project


def _latest(folder):
    return load_file(sorted(folder.glob("*/*.safetensors"))[-1])


@pytest.mark.parametrize("architecture", ["conv2", "conv4", "conv6", "conv8"])
def test_dense_and_signed_supermask_train_on_each_conv_net(cifar_project, run_kedro, architecture):
    params = {
        "model": {"architecture": architecture},
        "dense": {"training": ONE_EPOCH},
        "signed_supermask": {"training": ONE_EPOCH},
    }
    run_kedro("__default__", params)

    # The dataset followed the architecture: CIFAR-10 splits of 14 / 6 / 10 images, NHWC uint8.
    for split, n in (("train", 14), ("val", 6), ("test", 10)):
        loaded = HDF5SplitDataset(str(cifar_project / "data" / "03_primary" / "cifar10" / f"{split}.h5")).load()
        assert loaded.images.shape == (n, 32, 32, 3) and loaded.images.dtype == np.uint8
    spec = get_architecture(architecture)
    mlflow.set_tracking_uri(f"sqlite:///{cifar_project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["supermask_pipeline"], output_format="list")  # pipeline, methods
    for run in runs:
        assert run.data.tags["dataset"] == "cifar10" and run.data.tags["architecture"] == architecture
    (run,) = [r for r in runs if r.data.tags.get("method") == "signed_supermask"]
    for method in ("dense", "signed_supermask"):
        masks = _latest(cifar_project / "data" / "06_models" / method / architecture / "masks.safetensors")
        assert {k: tuple(v.shape) for k, v in masks.items()} == {l.name: l.weight_shape for l in layer_specs(spec)}
        summary = json.loads(
            (cifar_project / "data" / "08_reporting" / method / architecture / "evaluation_summary.json").read_text()
        )
        assert summary["architecture"] == architecture and 0.0 <= summary["test_accuracy"] <= 1.0
        history = (cifar_project / "data" / "07_model_output" / method / architecture / "training_history.csv")
        assert len(history.read_text().strip().splitlines()) == 2  # header + 1 epoch
        if method == "dense":
            assert summary["remaining_weight_count"] == count_weights(spec)
        else:
            assert summary["remaining_weight_count"] < count_weights(spec)
    # The per-architecture preset reached the run: conv2's signed-supermask learning rate is 0.04.
    if architecture == "conv2":
        assert run.data.params["signed_supermask.presets.conv2.learning_rate"] == "0.04"
        assert run.data.metrics["signed_supermask.learning_rate"] == pytest.approx(0.04 * 0.9 ** (2 / 20))


def test_augmentation_per_channel_bf16_and_channels_last_run_on_the_cpu(cifar_project, run_kedro):
    options = {
        "data": {"normalisation": "per_channel_standardisation", "augmentation": "crop_flip"},
        "training": {**ONE_EPOCH, "epochs": 2, "precision": "bf16", "channels_last": True},
    }
    run_kedro("signed_supermask", {"model": {"architecture": "conv2"}, "signed_supermask": options})
    summary = json.loads(
        (cifar_project / "data" / "08_reporting" / "signed_supermask" / "conv2" / "evaluation_summary.json").read_text()
    )
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    scores = _latest(cifar_project / "data" / "06_models" / "signed_supermask" / "conv2" / "trained_mask_scores.safetensors")
    assert all(torch.isfinite(t).all() and t.dtype == torch.float32 for t in scores.values())


def test_architecture_and_dataset_that_do_not_fit_are_refused(cifar_project, run_kedro):
    with pytest.raises(Exception, match=r"dataset 'mnist' has images of 28×28×1, but architecture 'conv6'"):
        run_kedro("signed_supermask", {"model": {"architecture": "conv6"}, "dataset": "mnist"})


def test_lottery_on_conv6_prunes_convolutions_at_15_percent(cifar_project, run_kedro):
    """The lottery pipeline takes any architecture: conv6 with its own conv rate (15 %)."""
    configurations = [{"criterion": "large_final", "mask_1_action": "signed_reshuffle", "mask_0_action": "freeze_init_zero_all"}]
    run_kedro("lottery", {
        "model": {"architecture": "conv6"},
        "lottery": {"training": ONE_EPOCH, "pruning": {"rounds": 1, "rates": None, "configurations": configurations}},
    })
    masks = load_file(cifar_project / "data/06_models/lottery/conv6/masks/"
                      "large_final.signed_reshuffle.freeze_init_zero_all/round_01.safetensors")
    for layer in layer_specs(get_architecture("conv6")):
        rate = 0.1 if layer.is_output else 0.15 if layer.kind == "conv" else 0.2
        numel = int(np.prod(layer.weight_shape))
        assert int(masks[layer.name].sum()) == round((1 - rate) * numel), layer.name
