"""log_split_inputs: the splits as MLflow dataset inputs of the active run."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from supermask_pipeline.images import ImageSplit, split_content_sha256
from supermask_pipeline.pipelines.datasets_tracking import log_split_inputs


def _split(n: int, seed: int, name: str) -> ImageSplit:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 4, 4, 1), dtype=np.uint8)
    labels = rng.integers(0, 3, n).astype(np.int64)
    return ImageSplit(images, labels, {"source": "mine", "split": name, "raw_root": "/data/01_raw/mine",
                                       "content_sha256": split_content_sha256(images, labels)})


@pytest.fixture
def store(tmp_path):
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("datasets_tracking")
    yield
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)


def test_nothing_without_an_active_run(store):
    assert mlflow.active_run() is None
    assert log_split_inputs(train=_split(5, 0, "train")) == []


def test_the_three_splits_are_the_runs_dataset_inputs(store):
    splits = {"train": _split(8, 0, "train"), "val": _split(3, 1, "val"), "test": _split(4, 2, "test")}
    with mlflow.start_run() as run:
        assert log_split_inputs(train=splits["train"], val=splits["val"]) == ["mine/train", "mine/val"]
        assert log_split_inputs(test=splits["test"]) == ["mine/test"]
    inputs = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    found = {i.dataset.name: (i.dataset.digest, i.dataset.source, {t.key: t.value for t in i.tags}) for i in inputs}
    contexts = {"train": "train", "val": "validation", "test": "test"}
    for key, split in splits.items():
        digest, source, tags = found[f"mine/{key}"]
        assert digest == split.attrs["content_sha256"][:32]
        assert "/data/01_raw/mine" in source
        assert tags["mlflow.data.context"] == contexts[key]
