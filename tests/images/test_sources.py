"""Loading a raw source: local files, missing files and unknown sources, the real MNIST."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest

from supermask_pipeline.images.errors import RawDataChecksumError, RawDataNotFoundError
from supermask_pipeline.images.sources import load_raw_images, missing_raw_files
from supermask_pipeline.images.specs import RAW_SOURCES


# --- local files ----------------------------------------------------------------------------


@pytest.mark.parametrize("compressed", [True, False], ids=["gz", "uncompressed"])
def test_load_local_files(tiny_source, tmp_path, compressed):
    root = tiny_source.write(tmp_path / "raw", compressed=compressed)
    tiny_source.assert_loaded(load_raw_images("tiny", root, download=False))


def test_load_mixed_gz_and_uncompressed(tiny_source, tmp_path):
    names = list(tiny_source.contents)
    root = tiny_source.write(tmp_path / "raw", compressed=True, only=tuple(names[:2]))
    tiny_source.write(root, compressed=False, only=tuple(names[2:]))
    tiny_source.assert_loaded(load_raw_images("tiny", root, download=False))


def test_loaded_arrays_are_writable(tiny_source, tmp_path):
    raw = load_raw_images("tiny", tiny_source.write(tmp_path / "raw"), download=False)
    assert raw.train_images.flags.writeable and raw.test_images.flags.writeable


def test_missing_files_without_download(tiny_source, tmp_path, sha256_of_files):
    names = [f.name for f in tiny_source.spec.files]
    root = tiny_source.write(tmp_path / "raw", only=(names[0], names[3]))
    before = sha256_of_files(root)

    assert missing_raw_files("tiny", root) == [names[1], names[2]]
    with pytest.raises(RawDataNotFoundError) as info:
        load_raw_images("tiny", root, download=False)
    message = str(info.value)
    assert str(root.resolve()) in message
    assert names[1] in message and names[2] in message
    assert names[0] not in message
    assert "raw_images" in message and "conf/local/catalog.yml" in message
    assert "download=False" in message
    assert sha256_of_files(root) == before


def test_missing_folder_is_not_created_without_download(tiny_source, tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(RawDataNotFoundError, match="nowhere"):
        load_raw_images("tiny", root, download=False)
    assert not root.exists()


def test_unknown_source_lists_known_sources(tmp_path):
    with pytest.raises(ValueError, match="Known sources: .*mnist"):
        load_raw_images("svhn", tmp_path)
    with pytest.raises(ValueError, match="mnist"):
        missing_raw_files("svhn", tmp_path)


# --- the real MNIST ---------------------------------------------------------------------------


def test_mnist_spec_matches_torchvision():
    datasets = pytest.importorskip("torchvision.datasets")
    spec = RAW_SOURCES["mnist"]
    assert list(spec.mirrors) == list(datasets.MNIST.mirrors)
    assert [(f.download_name, f.download_md5) for f in spec.files] == [
        tuple(r) for r in datasets.MNIST.resources
    ]


def test_real_mnist(mnist_raw):
    assert mnist_raw.source == "mnist" and mnist_raw.num_classes == 10
    assert mnist_raw.train_images.shape == (60000, 28, 28, 1)
    assert mnist_raw.test_images.shape == (10000, 28, 28, 1)
    assert mnist_raw.train_images.dtype == np.uint8 and mnist_raw.train_labels.dtype == np.int64
    assert mnist_raw.checksums == {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    }
    assert np.bincount(mnist_raw.train_labels).tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949,
    ]
    assert np.bincount(mnist_raw.test_labels).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009,
    ]
    assert mnist_raw.train_images.max() == 255 and mnist_raw.train_images.min() == 0


def test_real_mnist_uncompressed_copy_with_one_bad_byte(mnist_root, tmp_path):
    """The checksum catches a single changed byte in an otherwise valid 7.8 MB file."""
    name = "t10k-images-idx3-ubyte"
    for f in RAW_SOURCES["mnist"].files:
        if f.name != name:
            shutil.copy(mnist_root / f"{f.name}.gz", tmp_path / f"{f.name}.gz")
    with gzip.open(mnist_root / f"{name}.gz", "rb") as stream:
        content = bytearray(stream.read())
    content[5000] ^= 1
    (tmp_path / name).write_bytes(content)
    with pytest.raises(RawDataChecksumError, match=name):
        load_raw_images("mnist", tmp_path, download=False)
