"""Train / val / test splitting (Zhou et al., 2019) and ImageSplit validation."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pytest

from supermask_pipeline.images.sources import RawImageData
from supermask_pipeline.images.splitting import ImageSplit, split_content_sha256, split_dataset


def _raw(num_train: int = 50, num_test: int = 7) -> RawImageData:
    """Synthetic source whose image i has value i in pixel (0, 0, 0): indices are recoverable."""
    train = np.zeros((num_train, 4, 3, 2), dtype=np.uint8)
    train[:, 0, 0, 0] = np.arange(num_train)
    test = np.full((num_test, 4, 3, 2), 200, dtype=np.uint8)
    return RawImageData(
        train_images=train,
        train_labels=np.arange(num_train, dtype=np.int64) % 3,
        test_images=test,
        test_labels=np.arange(num_test, dtype=np.int64) % 3,
        source="synthetic",
        checksums={"train-file": "aa" * 32, "test-file": "bb" * 32},
        num_classes=3,
    )


def _indices(split: ImageSplit) -> np.ndarray:
    return split.images[:, 0, 0, 0].astype(np.int64)


def test_sizes_disjointness_and_order():
    raw = _raw()
    train, val, test = split_dataset(raw, num_val=12, seed=7)
    assert (train.num_images, val.num_images, test.num_images) == (38, 12, 7)
    train_idx, val_idx = _indices(train), _indices(val)
    # Together a permutation of the original training indices: disjoint and complete.
    np.testing.assert_array_equal(np.sort(np.concatenate([train_idx, val_idx])), np.arange(50))
    # Val is the first num_val of the seeded permutation, in drawn order; train keeps its order.
    np.testing.assert_array_equal(val_idx, np.random.default_rng(7).permutation(50)[:12])
    assert np.all(np.diff(train_idx) > 0)
    # Labels travel with their images; test is the official test set, untouched.
    np.testing.assert_array_equal(train.labels, raw.train_labels[train_idx])
    np.testing.assert_array_equal(val.labels, raw.train_labels[val_idx])
    np.testing.assert_array_equal(test.images, raw.test_images)
    np.testing.assert_array_equal(test.labels, raw.test_labels)
    for split in (train, val, test):
        assert split.images.dtype == np.uint8 and split.images.shape[1:] == (4, 3, 2)
        assert split.labels.dtype == np.int64


def test_attrs():
    train, val, test = split_dataset(_raw(), num_val=5, seed=3)
    for split, name in zip((train, val, test), ("train", "val", "test"), strict=True):
        assert split.attrs == {
            "source": "synthetic",
            "split": name,
            "split_seed": 3,
            "num_images": split.num_images,
            "num_classes": 3,
            "sha256:train-file": "aa" * 32,
            "sha256:test-file": "bb" * 32,
            "raw_root": "",
            "content_sha256": split_content_sha256(split.images, split.labels),
        }


def test_deterministic_per_seed():
    raw = _raw()
    first = split_dataset(raw, 10, seed=0)
    again = split_dataset(raw, 10, seed=0)
    other = split_dataset(raw, 10, seed=1)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(_indices(first[1]), _indices(other[1]))
    assert set(_indices(first[1])) != set(_indices(other[1]))


def test_splits_do_not_share_memory_with_raw_training_set():
    raw = _raw()
    train, val, _ = split_dataset(raw, 10, seed=0)
    assert not np.shares_memory(train.images, raw.train_images)
    assert not np.shares_memory(val.images, raw.train_images)


@pytest.mark.parametrize("num_val", [0, -1, 50, 51])
def test_num_val_out_of_range(num_val):
    with pytest.raises(ValueError, match=r"num_val must lie in \(0, 50\)"):
        split_dataset(_raw(), num_val=num_val, seed=0)


@pytest.mark.parametrize("num_val, seed", [(2.5, 0), ("5", 0), (True, 0), (5, 1.5)])
def test_non_integer_arguments(num_val, seed):
    with pytest.raises(ValueError, match="must be an integer"):
        split_dataset(_raw(), num_val=num_val, seed=seed)


def test_numpy_integers_are_accepted():
    train, val, _ = split_dataset(_raw(), num_val=np.int64(5), seed=np.int32(2))
    assert val.num_images == 5 and train.attrs["split_seed"] == 2
    assert type(train.attrs["split_seed"]) is int


# --- ImageSplit validation ----------------------------------------------------------------------


def _ok():
    return np.zeros((3, 2, 2, 1), np.uint8), np.zeros(3, np.int64)


@pytest.mark.parametrize(
    "images, labels, message",
    [
        (np.zeros((3, 2, 2, 1), np.float32), _ok()[1], "images must be a uint8"),
        (np.zeros((3, 2, 2), np.uint8), _ok()[1], r"shape \(3, 2, 2\)"),
        ([[1]], _ok()[1], "found list"),
        (_ok()[0], np.zeros(3, np.int32), "labels must be an int64"),
        (_ok()[0], np.zeros((3, 1), np.int64), r"shape \(3, 1\)"),
        (_ok()[0], np.zeros(4, np.int64), "3 images but 4 labels"),
    ],
)
def test_image_split_rejects_bad_arrays(images, labels, message):
    with pytest.raises(ValueError, match=message):
        ImageSplit(images=images, labels=labels, attrs={})


@pytest.mark.parametrize("attrs", [{"a": [1, 2]}, {"a": None}, {"a": True}, {1: "x"}])
def test_image_split_rejects_bad_attrs(attrs):
    with pytest.raises(ValueError, match="attrs must"):
        ImageSplit(*_ok(), attrs=attrs)


def test_image_split_num_images():
    split = ImageSplit(*_ok(), attrs={"s": "x", "i": 1, "f": 0.5, "n": np.int64(2)})
    assert split.num_images == 3 and isinstance(split.num_images, int)


# --- the real MNIST -------------------------------------------------------------------------------


def test_real_mnist_split(mnist_raw):
    train, val, test = split_dataset(mnist_raw, num_val=5000, seed=0)
    assert (train.num_images, val.num_images, test.num_images) == (55000, 5000, 10000)
    assert train.images.shape == (55000, 28, 28, 1) and val.labels.shape == (5000,)
    # Train and val together hold exactly the official training images (as a multiset).
    def digests(images: np.ndarray) -> Counter:
        return Counter(hashlib.sha1(row).digest() for row in images.reshape(len(images), -1))

    assert digests(train.images) + digests(val.images) == digests(mnist_raw.train_images)
    np.testing.assert_array_equal(
        np.bincount(train.labels, minlength=10) + np.bincount(val.labels, minlength=10),
        np.bincount(mnist_raw.train_labels),
    )
    assert train.attrs["sha256:train-images-idx3-ubyte"] == mnist_raw.checksums["train-images-idx3-ubyte"]
    assert test.attrs["num_images"] == 10000 and test.attrs["split"] == "test"
