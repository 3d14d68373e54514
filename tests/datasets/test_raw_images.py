"""RawImageDataset: read-only Kedro access to verified raw files."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
from kedro.io import DataCatalog
from kedro.io.core import DatasetError

from supermask_pipeline.images.errors import RawDataChecksumError, RawDataNotFoundError
from supermask_pipeline.images.idx import encode_idx
from supermask_pipeline.images.sources import RawImageData
from supermask_pipeline.images.specs import RAW_SOURCES
from supermask_pipeline.datasets import RawImageDataset

MNIST_DIRS = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "mnist",
    Path("/work/shared/datasets/mnist"),
)


@pytest.fixture
def tiny_root(tmp_path, monkeypatch) -> Path:
    """Folder with MNIST-format files of 5 train / 3 test images, registered as source "tiny"."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        "train_labels": np.array([0, 1, 2, 3, 9], dtype=np.uint8),
        "test_images": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "test_labels": np.array([4, 5, 6], dtype=np.uint8),
    }
    root = tmp_path / "01_raw" / "tiny"
    root.mkdir(parents=True)
    files = []
    for f in RAW_SOURCES["mnist"].files:
        content = encode_idx(arrays[f.role])
        (root / f"{f.name}.gz").write_bytes(gzip.compress(content))
        files.append(dataclasses.replace(f, sha256=hashlib.sha256(content).hexdigest()))
    spec = dataclasses.replace(RAW_SOURCES["mnist"], name="tiny", files=tuple(files), mirrors=())
    monkeypatch.setitem(RAW_SOURCES, "tiny", spec)
    return root


def test_load(tiny_root):
    dataset = RawImageDataset(root=str(tiny_root), source="tiny", download=False)
    assert dataset.exists()
    raw = dataset.load()
    assert isinstance(raw, RawImageData)
    assert raw.train_images.shape == (5, 28, 28, 1) and raw.test_labels.tolist() == [4, 5, 6]
    assert set(raw.checksums) == {f.name for f in RAW_SOURCES["tiny"].files}


def test_save_is_refused(tiny_root):
    with pytest.raises(DatasetError, match="read-only"):
        RawImageDataset(root=str(tiny_root), source="tiny").save(object())


def test_missing_files_error_keeps_message(tmp_path):
    root = tmp_path / "01_raw" / "mnist"
    dataset = RawImageDataset(root=str(root), download=False)
    assert not dataset.exists()
    with pytest.raises(DatasetError) as info:
        dataset.load()
    assert isinstance(info.value.__cause__, RawDataNotFoundError)
    assert str(info.value.__cause__) in str(info.value)
    assert str(root) in str(info.value) and "conf/local/catalog.yml" in str(info.value)
    assert not root.exists()


def test_checksum_error_keeps_message(tiny_root):
    bad = tiny_root / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(gzip.compress(encode_idx(np.array([4, 5, 7], dtype=np.uint8))))
    with pytest.raises(DatasetError, match="does not have the published content") as info:
        RawImageDataset(root=str(tiny_root), source="tiny").load()
    assert isinstance(info.value.__cause__, RawDataChecksumError)
    assert str(bad) in str(info.value)


def test_unknown_source(tmp_path):
    with pytest.raises(DatasetError, match="Known sources: .*mnist"):
        RawImageDataset(root=str(tmp_path), source="imagenet").load()


def test_describe_and_catalog(tiny_root):
    catalog = DataCatalog.from_config(
        {"raw_images": {"type": "supermask_pipeline.datasets.RawImageDataset", "root": str(tiny_root),
                        "source": "tiny", "download": False}}
    )
    dataset = catalog["raw_images"]
    assert dataset._describe() == {"root": tiny_root.as_posix(), "source": "tiny", "download": False}
    assert catalog.load("raw_images").train_labels.tolist() == [0, 1, 2, 3, 9]


def test_real_mnist_through_catalog():
    root = next((d for d in MNIST_DIRS if (d / "train-images-idx3-ubyte.gz").is_file()), None)
    if root is None:
        pytest.skip("official MNIST files not found in ../shared/datasets/mnist")
    catalog = DataCatalog.from_config(
        {"raw_images": {"type": "supermask_pipeline.datasets.RawImageDataset", "root": str(root),
                        "download": False}}
    )
    raw = catalog.load("raw_images")
    assert raw.train_images.shape == (60000, 28, 28, 1) and raw.test_images.shape == (10000, 28, 28, 1)
