"""HDF5SplitDataset: round trip, atomic save, validation on load."""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from kedro.io import DataCatalog
from kedro.io.core import DatasetError

from supermask_pipeline.images.splitting import CONTENT_DIGEST, ImageSplit, split_content_sha256
from supermask_pipeline.datasets import HDF5SplitDataset
from supermask_pipeline.datasets import hdf5_split


def _split(num: int = 9, seed: int = 0, split: str = "train") -> ImageSplit:
    rng = np.random.default_rng(seed)
    return ImageSplit(
        images=rng.integers(0, 256, size=(num, 6, 5, 3), dtype=np.uint8),
        labels=rng.integers(0, 10, size=num).astype(np.int64),
        attrs={
            "source": "mnist",
            "split": split,
            "split_seed": seed,
            "num_images": num,
            "num_classes": 10,
            "sha256:train-images-idx3-ubyte": "ba" * 32,
            "fraction": 0.25,
        },
    )


def _assert_equal(a: ImageSplit, b: ImageSplit) -> None:
    """``a`` (loaded) equals ``b`` (saved), plus the content checksum written on save."""
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.attrs[CONTENT_DIGEST] == split_content_sha256(b.images, b.labels)
    attrs = {k: v for k, v in a.attrs.items() if k != CONTENT_DIGEST}
    assert attrs == b.attrs
    assert {k: type(v) for k, v in attrs.items()} == {k: type(v) for k, v in b.attrs.items()}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("compression", [None, "gzip", "lzf"])
def test_round_trip(tmp_path, compression):
    path = tmp_path / "splits" / "train.h5"  # parent created on save
    dataset = HDF5SplitDataset(filepath=str(path), compression=compression)
    assert not dataset.exists()
    original = _split()
    dataset.save(original)
    assert dataset.exists()
    loaded = dataset.load()
    _assert_equal(loaded, original)
    assert loaded.images.dtype == np.uint8 and loaded.labels.dtype == np.int64
    with h5py.File(path, "r") as h5:
        assert h5["images"].compression == compression
        assert h5.attrs["split"] == "train"
    assert sorted(p.name for p in path.parent.iterdir()) == ["train.h5"]


def test_overwrite_replaces_content(tmp_path):
    dataset = HDF5SplitDataset(str(tmp_path / "val.h5"))
    dataset.save(_split(seed=0))
    dataset.save(_split(num=4, seed=1, split="val"))
    _assert_equal(dataset.load(), _split(num=4, seed=1, split="val"))


def test_describe_and_catalog(tmp_path):
    path = tmp_path / "test.h5"
    dataset = HDF5SplitDataset(str(path), metadata={"kedro-viz": {"layer": "model_input"}})
    assert dataset._describe()["filepath"] == path.as_posix()
    assert str(path.as_posix()) in str(dataset)
    assert dataset.metadata == {"kedro-viz": {"layer": "model_input"}}

    catalog = DataCatalog.from_config(
        {"mnist_test": {"type": "supermask_pipeline.datasets.HDF5SplitDataset", "filepath": str(path),
                        "compression": "gzip"}}
    )
    catalog.save("mnist_test", _split(split="test"))
    _assert_equal(catalog.load("mnist_test"), _split(split="test"))


def test_unknown_compression():
    with pytest.raises(DatasetError, match="compression must be one of"):
        HDF5SplitDataset("x.h5", compression="zstd")


def test_save_rejects_other_types(tmp_path):
    with pytest.raises(DatasetError, match="saves an ImageSplit, got dict"):
        HDF5SplitDataset(str(tmp_path / "x.h5")).save({"images": 1})


def _fail_mid_write(monkeypatch):
    """Make the write fail after the arrays are written, before the attributes."""

    def boom(h5, attrs):
        h5.attrs["half"] = "written"
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(hdf5_split, "_write_attrs", boom)


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "train.h5"
    dataset = HDF5SplitDataset(str(path))
    dataset.save(_split(seed=0))
    before = _digest(path)

    _fail_mid_write(monkeypatch)
    with pytest.raises(DatasetError, match="disk full"):
        dataset.save(_split(seed=5))
    assert _digest(path) == before
    _assert_equal(dataset.load(), _split(seed=0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.h5"]  # temp file removed


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    _fail_mid_write(monkeypatch)
    dataset = HDF5SplitDataset(str(tmp_path / "train.h5"))
    with pytest.raises(DatasetError):
        dataset.save(_split())
    assert list(tmp_path.iterdir()) == []
    assert not dataset.exists()


def test_replace_happens_after_file_is_complete(tmp_path, monkeypatch):
    """What os.replace moves into place is already a complete, loadable file."""
    path = tmp_path / "train.h5"
    moved = []
    real_replace = hdf5_split.os.replace

    def spy(src, dst):
        moved.append(HDF5SplitDataset(str(src)).load())
        real_replace(src, dst)

    monkeypatch.setattr(hdf5_split.os, "replace", spy)
    HDF5SplitDataset(str(path)).save(_split())
    assert len(moved) == 1
    _assert_equal(moved[0], _split())


# --- validation on load -------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "absent.h5"
    with pytest.raises(DatasetError) as info:
        HDF5SplitDataset(str(path)).load()
    assert str(path) in str(info.value)
    assert "data_processing" in str(info.value)


def _write_raw(path: Path, images=None, labels=None, attrs=None, skip=()):
    """Write an HDF5 file directly, bypassing the dataset's own checks (with the content checksum
    of what it writes, unless ``attrs`` has one)."""
    split = _split()
    images = split.images if images is None else images
    labels = split.labels if labels is None else labels
    attrs = dict(split.attrs) if attrs is None else dict(attrs)
    attrs.setdefault(CONTENT_DIGEST, split_content_sha256(images, labels.astype(np.int64)))
    with h5py.File(path, "w") as h5:
        if "images" not in skip:
            h5.create_dataset("images", data=images)
        if "labels" not in skip:
            h5.create_dataset("labels", data=labels)
        for key, value in attrs.items():
            h5.attrs[key] = value


_ATTRS = _split().attrs
_NO_NUM_IMAGES = {k: v for k, v in _ATTRS.items() if k != "num_images"}
_NO_NUM_CLASSES = {k: v for k, v in _ATTRS.items() if k != "num_classes"}


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"skip": ("labels",)}, r"expected datasets 'images' and 'labels', found keys \['images'\]"),
        ({"skip": ("images",)}, r"found keys \['labels'\]"),
        ({"images": np.zeros((9, 6, 5, 3), np.float32)}, "images expected uint8 .* found float32"),
        ({"images": np.zeros((9, 6, 5), np.uint8)}, 
         r"images expected uint8 of shape \(N, H, W, C\), found uint8 of shape \(9, 6, 5\)"),
        ({"labels": np.zeros(9, np.int32)}, "labels expected int64 .* found int32"),
        ({"labels": np.zeros((9, 1), np.int64)}, r"found int64 of shape \(9, 1\)"),
        ({"labels": np.zeros(8, np.int64)}, "labels expected 9 labels .* found 8"),
        ({"attrs": {**_ATTRS, "num_images": 10}}, "attribute num_images expected 9 .* found 10"),
        ({"attrs": _NO_NUM_IMAGES}, "num_images expected 9 .* found 'missing'"),
        ({"attrs": _NO_NUM_CLASSES}, "num_classes expected a positive integer"),
        ({"labels": np.full(9, 10, np.int64)},
         r"labels expected values in \[0, 10\), found values in \[10, 10\]"),
        ({"labels": np.arange(9, dtype=np.int64) - 1}, r"found values in \[-1, 7\]"),
        ({"attrs": {**_ATTRS, "bad": np.arange(3)}}, "attrs must map str to str, int or float"),
    ],
    ids=[
        "missing-labels", "missing-images", "images-dtype", "images-shape", "labels-dtype",
        "labels-shape", "count-mismatch", "num-images-attr", "num-images-missing",
        "num-classes-missing", "label-too-large", "label-negative", "attr-type",
    ],
)
def test_load_validation(tmp_path, kwargs, expected):
    path = tmp_path / "bad.h5"
    _write_raw(path, **kwargs)
    before = _digest(path)
    with pytest.raises(DatasetError, match=expected) as info:
        HDF5SplitDataset(str(path)).load()
    assert str(path) in str(info.value)
    assert _digest(path) == before  # a failed load leaves the file as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.h5"]


def test_not_an_hdf5_file(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("not hdf5")
    with pytest.raises(DatasetError, match="could not be read") as info:
        HDF5SplitDataset(str(path)).load()
    assert str(path) in str(info.value)


@pytest.mark.parametrize("compression", [None, "gzip"])
@pytest.mark.parametrize(
    "keep, expected",
    [
        (lambda n: n // 2, "truncated file"),
        (lambda n: n - 1, "truncated file"),
        (lambda n: 8, "could not be read"),
        (lambda n: 0, "file signature not found"),
    ],
    ids=["half", "last-byte", "header", "empty"],
)
def test_truncated_file(tmp_path, compression, keep, expected):
    """A file cut short (a copy or a download interrupted) is refused, naming the file."""
    path = tmp_path / "train.h5"
    HDF5SplitDataset(str(path), compression=compression).save(_split(num=50))
    content = path.read_bytes()
    path.write_bytes(content[: keep(len(content))])
    before = _digest(path)
    with pytest.raises(DatasetError, match=expected) as info:
        HDF5SplitDataset(str(path)).load()
    assert f"HDF5 split file {path} could not be read (truncated or corrupt?)" in str(info.value)
    assert _digest(path) == before


# --- content checksum --------------------------------------------------------------------------


def test_a_byte_flipped_in_the_images_is_refused(tmp_path):
    path = tmp_path / "test.h5"
    HDF5SplitDataset(str(path)).save(_split())
    with h5py.File(path, "r+") as h5:  # one pixel changed in place: the file still parses
        h5["images"][4, 2, 1, 0] ^= 0x5A
    before = _digest(path)
    with pytest.raises(hdf5_split.SplitCorruptError, match=r"is corrupt: the sha256 of its images and labels") as info:
        HDF5SplitDataset(str(path)).load()
    assert isinstance(info.value, DatasetError)
    assert str(path) in str(info.value) and "kedro run --pipeline=data_processing" in str(info.value)
    assert _digest(path) == before


def test_a_byte_flipped_in_the_file_bytes_is_refused(tmp_path):
    """Random bytes written into the image data of the file, as the user did."""
    path = tmp_path / "test.h5"
    split = _split(num=200)
    HDF5SplitDataset(str(path)).save(split)
    with h5py.File(path, "r") as h5:
        offset = h5["images"].id.get_offset()
    data = bytearray(path.read_bytes())
    data[offset + 1000] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(hdf5_split.SplitCorruptError, match="data_processing"):
        HDF5SplitDataset(str(path)).load()


def test_a_split_without_a_checksum_asks_to_rerun_data_processing(tmp_path):
    path = tmp_path / "old.h5"
    _write_raw(path)
    with h5py.File(path, "r+") as h5:
        del h5.attrs[CONTENT_DIGEST]
    with pytest.raises(hdf5_split.SplitCorruptError, match=r"has no content checksum .*kedro run --pipeline=data_processing"):
        HDF5SplitDataset(str(path)).load()


def test_save_writes_the_checksum_of_the_data_not_a_stale_attribute(tmp_path):
    split = _split()
    stale = ImageSplit(split.images, split.labels, {**split.attrs, CONTENT_DIGEST: "0" * 64})
    dataset = HDF5SplitDataset(str(tmp_path / "a.h5"))
    dataset.save(stale)
    assert dataset.load().attrs[CONTENT_DIGEST] == split_content_sha256(split.images, split.labels)
