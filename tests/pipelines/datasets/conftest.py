"""A throw-away project whose own datasets are added by configuration only (conf/local/datasets.yml)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from kedro.framework.startup import bootstrap_project

from ..conftest import REPO, _end_active_runs
from tests.images.own_datasets import idx_entry, random_arrays, write_idx_dataset, write_npz_dataset

NPZ_KEYS = {"train_images": "x_train", "train_labels": "y_train", "test_images": "x_test", "test_labels": "y_test"}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """conf/base from the repo; conf/local/datasets.yml adds ``digits`` (idx .gz, 600 / 100 images of
    28×28, 10 classes) and ``shapes`` (npz, 300 / 60 images, 3 classes), with no checksums; their
    files in data/01_raw/<name>/; no code."""
    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "true")
    shutil.copytree(REPO / "conf" / "base", tmp_path / "conf" / "base")
    (tmp_path / "conf" / "local").mkdir()
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "src").mkdir()
    datasets = {
        "digits": idx_entry(10),
        "shapes": {"format": "npz", "image_shape": [28, 28, 1], "num_classes": 3,
                   "files": {"data": "shapes.npz"}, "keys": NPZ_KEYS},
    }
    (tmp_path / "conf" / "local" / "datasets.yml").write_text(yaml.safe_dump(datasets))
    server = {"server": {"mlflow_tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}}
    (tmp_path / "conf" / "local" / "mlflow.yml").write_text(yaml.safe_dump(server))
    write_idx_dataset(tmp_path / "data" / "01_raw" / "digits", random_arrays(600, 100, seed=1))
    write_npz_dataset(tmp_path / "data" / "01_raw" / "shapes" / "shapes.npz",
                      random_arrays(300, 60, num_classes=3, seed=2), NPZ_KEYS)
    monkeypatch.chdir(tmp_path)
    bootstrap_project(tmp_path)
    _end_active_runs()
    yield tmp_path
    _end_active_runs()
