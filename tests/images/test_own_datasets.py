"""Datasets as configuration: entries parsed into specs, trust on first use, the checksum
message (another dataset or a damaged copy), the presence check, fitted architectures."""

from __future__ import annotations

import gzip
import hashlib
import json

import numpy as np
import pytest

from supermask_pipeline.images import (
    CHECKSUMS_FILE,
    RAW_SOURCES,
    DatasetConfigError,
    RawDataChecksumError,
    RawDataCorruptError,
    RawDataNotFoundError,
    check_raw_available,
    configure_datasets,
    dataset_from_config,
    load_raw_images,
)
from supermask_pipeline.images.published import PUBLISHED_DATASETS
from supermask_pipeline.models.architectures import get_architecture, resolve_dataset
from tests.images.own_datasets import IDX_NAMES, idx_entry, random_arrays, write_idx_dataset, write_npz_dataset


@pytest.fixture
def registry(monkeypatch):
    """RAW_SOURCES restored after the test (configure_datasets changes it)."""
    monkeypatch.setattr("supermask_pipeline.images.specs._CONFIGURED", set())
    saved = dict(RAW_SOURCES)
    yield RAW_SOURCES
    RAW_SOURCES.clear()
    RAW_SOURCES.update(saved)


def test_published_entries_keep_their_checksums():
    import torchvision.datasets as tv

    mnist = RAW_SOURCES["mnist"]
    assert mnist.files[0].sha256 == "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
    kmnist = RAW_SOURCES["kmnist"]
    assert list(kmnist.mirrors) == list(tv.KMNIST.mirrors)
    assert sorted((f.download_name, f.download_md5) for f in kmnist.files) == sorted(tv.KMNIST.resources)
    cifar100 = RAW_SOURCES["cifar100"]
    assert cifar100.archive.md5 == tv.CIFAR100.tgz_md5 and cifar100.archive.folder == tv.CIFAR100.base_folder
    assert [[f.name, f.md5] for f in cifar100.files] == tv.CIFAR100.train_list + tv.CIFAR100.test_list
    assert (cifar100.num_classes, cifar100.label_key) == (100, "fine_labels")
    assert set(PUBLISHED_DATASETS) == {"mnist", "kmnist", "cifar10", "cifar100"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "png"}, r"format must be one of \['idx', 'cifar_python', 'npz', 'hdf5'\]"),
        ({"image_shape": [28, 28]}, r"image_shape must be \[height, width, channels\]"),
        ({"num_classes": 1}, r"num_classes must be at least 2"),
        ({"files": {"train_images": "a"}}, r"an idx dataset has the files"),
        ({"colour": True}, r"unknown key\(s\) \['colour'\]"),
        ({"files": {**IDX_NAMES, "train_images": {"name": "a", "sha256": "xyz"}}}, r"files.train_images.sha256 must be 64 hex"),
    ],
)
def test_a_bad_entry_names_the_field(change, message):
    with pytest.raises(DatasetConfigError, match=message) as info:
        dataset_from_config("mine", {**idx_entry(), **change})
    assert "Dataset entry 'mine'" in str(info.value)


def test_configured_datasets_are_registered_and_replaced(registry):
    assert configure_datasets({"mine": idx_entry()}) == ["mine"]
    assert "mine" in RAW_SOURCES
    configure_datasets({"other": idx_entry(3)})
    assert "mine" not in RAW_SOURCES and RAW_SOURCES["other"].num_classes == 3
    assert {"mnist", "kmnist", "cifar10", "cifar100"} <= set(RAW_SOURCES)
    with pytest.raises(DatasetConfigError, match="is a published dataset"):
        configure_datasets({"mnist": idx_entry()})


def test_unknown_dataset_lists_the_configured_ones(registry):
    configure_datasets({"mine": idx_entry()})
    with pytest.raises(ValueError, match=r"Unknown dataset 'svhn'\. Known datasets: cifar10, cifar100, kmnist, mine, mnist"):
        resolve_dataset("fcn", "svhn")
    assert resolve_dataset("fcn", "mine") == "mine" and resolve_dataset("fcn", "auto") == "mnist"


def test_architectures_take_the_dataset_shape_and_classes(registry):
    configure_datasets({"three": idx_entry(3), "big": {**idx_entry(5), "image_shape": [36, 36, 3]}})
    fcn = get_architecture("fcn", "three")
    assert fcn.input_shape == (1, 28, 28) and fcn.dense == (300, 100, 3)
    assert get_architecture("conv2", "big").input_shape == (3, 36, 36)
    assert get_architecture("conv4", "big").dense == (256, 256, 5)
    with pytest.raises(ValueError, match=r"'conv6' has 3 2×2 max-pools .* multiples of 8 .*these fit: fcn, conv2, conv4"):
        get_architecture("conv6", "big")
    assert get_architecture("fcn", "mnist") == get_architecture("fcn")


def test_trust_on_first_use_records_then_refuses_a_changed_file(registry, tmp_path, caplog):
    configure_datasets({"mine": idx_entry()})
    arrays = random_arrays(20, 10)
    paths = write_idx_dataset(tmp_path, arrays)
    with caplog.at_level("WARNING"):
        raw = load_raw_images("mine", tmp_path, download=False)
    assert "trust on first use" in caplog.text
    record = json.loads((tmp_path / CHECKSUMS_FILE).read_text())
    assert record["dataset"] == "mine"
    assert record["files"]["train-images-idx3-ubyte"]["sha256"] == raw.checksums["train-images-idx3-ubyte"]
    np.testing.assert_array_equal(raw.train_images[..., 0], arrays["train_images"])
    load_raw_images("mine", tmp_path, download=False)  # verified against the record

    other = dict(arrays, test_images=arrays["test_images"][::-1].copy())
    write_idx_dataset(tmp_path, other)
    before = paths["test_images"].read_bytes()
    with pytest.raises(RawDataChecksumError, match="recorded content of t10k-images-idx3-ubyte") as info:
        load_raw_images("mine", tmp_path, download=False)
    assert "recorded on first use" in str(info.value)
    assert paths["test_images"].read_bytes() == before  # never modified


def test_another_idx_dataset_under_the_mnist_name_is_called_another_dataset(tmp_path):
    write_idx_dataset(tmp_path, random_arrays(60, 10))
    with pytest.raises(RawDataChecksumError) as info:
        load_raw_images("mnist", tmp_path, download=False)
    message = str(info.value)
    assert "well-formed idx file of 60 images of 28×28" in message
    assert "most likely another dataset" in message and "its own dataset entry" in message
    assert "Delete" not in message and "left as it is" in message


def test_a_truncated_file_is_called_a_damaged_copy(tmp_path):
    paths = write_idx_dataset(tmp_path, random_arrays(60, 10), gz=False)
    data = paths["train_images"].read_bytes()
    paths["train_images"].write_bytes(data[: len(data) // 2])
    with pytest.raises(RawDataChecksumError) as info:
        load_raw_images("mnist", tmp_path, download=False)
    assert "most likely a damaged copy" in str(info.value) and "does not parse" in str(info.value)


def test_a_truncated_gzip_is_called_a_damaged_copy(tmp_path):
    paths = write_idx_dataset(tmp_path, random_arrays(60, 10))
    paths["train_images"].write_bytes(paths["train_images"].read_bytes()[:-30])
    with pytest.raises(RawDataCorruptError, match="most likely a damaged copy"):
        load_raw_images("mnist", tmp_path, download=False)


def test_an_npz_dataset_of_three_classes(registry, tmp_path):
    arrays = random_arrays(30, 9, num_classes=3)
    keys = {"train_images": "x_train", "train_labels": "y_train", "test_images": "x_test", "test_labels": "y_test"}
    path = write_npz_dataset(tmp_path / "shapes.npz", arrays, keys)
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    configure_datasets({"shapes": {"format": "npz", "image_shape": [28, 28, 1], "num_classes": 3,
                                   "files": {"data": {"name": "shapes.npz", "sha256": sha256}}, "keys": keys}})
    raw = load_raw_images("shapes", tmp_path, download=False)
    assert raw.train_images.shape == (30, 28, 28, 1) and raw.num_classes == 3
    assert raw.test_labels.dtype == np.int64 and set(raw.test_labels) <= {0, 1, 2}
    assert not (tmp_path / CHECKSUMS_FILE).exists()  # published (given) checksum: nothing recorded


def test_an_hdf5_dataset_with_labels_out_of_range_is_refused(registry, tmp_path):
    import h5py

    arrays = random_arrays(10, 4, num_classes=5)
    with h5py.File(tmp_path / "d.h5", "w") as h5:
        for role, array in arrays.items():
            h5[role] = array
    configure_datasets({"d": {"format": "hdf5", "image_shape": [28, 28, 1], "num_classes": 3, "files": {"data": "d.h5"}}})
    with pytest.raises(RawDataCorruptError, match=r"labels must lie in \[0, 3\)"):
        load_raw_images("d", tmp_path, download=False)
    assert not (tmp_path / CHECKSUMS_FILE).exists()  # nothing trusted that does not parse


def test_check_raw_available_names_folder_files_and_fix(registry, tmp_path):
    configure_datasets({"mine": idx_entry()})
    with pytest.raises(RawDataNotFoundError) as info:
        check_raw_available("mine", tmp_path / "raw", download=True)  # no mirrors: cannot download
    message = str(info.value)
    assert str((tmp_path / "raw").resolve()) in message and "train-images-idx3-ubyte.gz" in message
    assert "names no mirrors" in message and "conf/local/catalog.yml" in message
    check_raw_available("mnist", tmp_path / "raw", download=True)  # mirrors: downloadable
    with pytest.raises(RawDataNotFoundError, match="switched off"):
        check_raw_available("mnist", tmp_path / "raw", download=False)
    write_idx_dataset(tmp_path / "raw", random_arrays(5, 5))
    check_raw_available("mine", tmp_path / "raw", download=False)
    assert not (tmp_path / "raw" / CHECKSUMS_FILE).exists()  # presence only: nothing read or written
