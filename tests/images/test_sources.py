"""Raw sources: idx parsing, checksum verification, local lookup, download and errors."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from supermask_pipeline.images import sources
from supermask_pipeline.images.sources import (
    RAW_SOURCES,
    RawDataChecksumError,
    RawDataCorruptError,
    RawDataError,
    RawDataNotFoundError,
    encode_idx,
    load_raw_images,
    missing_raw_files,
    parse_idx,
)

# --- idx format -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(dtype):
    array = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    parsed = parse_idx(encode_idx(array))
    assert parsed.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(parsed, array)


def test_idx_header_is_big_endian_with_mnist_magic():
    data = encode_idx(np.zeros((60000, 28, 28), dtype=np.uint8))
    assert data[:4] == bytes([0, 0, 0x08, 3])  # magic 2051 of train-images-idx3-ubyte
    assert int.from_bytes(data[4:8], "big") == 60000
    assert int.from_bytes(data[8:12], "big") == 28
    assert len(data) == 16 + 60000 * 28 * 28


def test_idx_rejects_bad_magic_and_wrong_size():
    good = encode_idx(np.zeros((3, 2), dtype=np.uint8))
    with pytest.raises(RawDataCorruptError, match="not an idx file"):
        parse_idx(b"\x01" + good[1:], "x-idx")
    with pytest.raises(RawDataCorruptError, match="unknown idx element type 0x07"):
        parse_idx(good[:2] + b"\x07" + good[3:], "x-idx")
    with pytest.raises(RawDataCorruptError, match=r"x-idx: header says shape \(3, 2\)"):
        parse_idx(good[:-1], "x-idx")


# --- local files ----------------------------------------------------------------------------


def _assert_matches(raw, tiny):
    assert raw.source == "tiny"
    assert raw.num_classes == 10
    assert raw.train_images.shape == (30, 28, 28, 1) and raw.train_images.dtype == np.uint8
    assert raw.test_images.shape == (12, 28, 28, 1) and raw.test_images.dtype == np.uint8
    assert raw.train_labels.shape == (30,) and raw.train_labels.dtype == np.int64
    assert raw.test_labels.shape == (12,) and raw.test_labels.dtype == np.int64
    np.testing.assert_array_equal(raw.train_images[..., 0], tiny.arrays["train_images"])
    np.testing.assert_array_equal(raw.test_images[..., 0], tiny.arrays["test_images"])
    np.testing.assert_array_equal(raw.train_labels, tiny.arrays["train_labels"])
    np.testing.assert_array_equal(raw.test_labels, tiny.arrays["test_labels"])
    assert raw.checksums == {f.name: f.sha256 for f in tiny.spec.files}


@pytest.mark.parametrize("compressed", [True, False], ids=["gz", "uncompressed"])
def test_load_local_files(tiny_source, tmp_path, compressed):
    root = tiny_source.write(tmp_path / "raw", compressed=compressed)
    _assert_matches(load_raw_images("tiny", root, download=False), tiny_source)


def test_load_mixed_gz_and_uncompressed(tiny_source, tmp_path):
    names = list(tiny_source.contents)
    root = tiny_source.write(tmp_path / "raw", compressed=True, only=tuple(names[:2]))
    tiny_source.write(root, compressed=False, only=tuple(names[2:]))
    _assert_matches(load_raw_images("tiny", root, download=False), tiny_source)


def test_recompressed_gz_is_accepted(tiny_source, tmp_path):
    """Checksums are over decompressed bytes: other gzip settings give other .gz bytes."""
    first = tiny_source.write(tmp_path / "a")
    second = tmp_path / "b"
    second.mkdir()
    for name, content in tiny_source.contents.items():
        (second / f"{name}.gz").write_bytes(gzip.compress(content, compresslevel=1, mtime=12345))
    name = next(iter(tiny_source.contents))
    assert (first / f"{name}.gz").read_bytes() != (second / f"{name}.gz").read_bytes()
    _assert_matches(load_raw_images("tiny", second, download=False), tiny_source)


def test_loaded_arrays_are_writable(tiny_source, tmp_path):
    raw = load_raw_images("tiny", tiny_source.write(tmp_path / "raw"), download=False)
    assert raw.train_images.flags.writeable and raw.test_images.flags.writeable


def test_checksum_mismatch_names_file_and_both_checksums(tiny_source, tmp_path, sha256_of_files):
    root = tiny_source.write(tmp_path / "raw")
    spec_file = tiny_source.spec.files[2]  # test images
    content = bytearray(tiny_source.contents[spec_file.name])
    content[-1] ^= 0xFF  # same size, same header: only the checksum can tell
    bad = root / f"{spec_file.name}.gz"
    bad.write_bytes(gzip.compress(bytes(content), mtime=0))
    before = sha256_of_files(root)

    with pytest.raises(RawDataChecksumError) as info:
        load_raw_images("tiny", root, download=True)  # present files are never re-downloaded
    message = str(info.value)
    assert str(bad) in message
    assert spec_file.sha256 in message
    assert hashlib.sha256(bytes(content)).hexdigest() in message
    assert "Delete it" in message
    assert sha256_of_files(root) == before


def test_truncated_gzip_is_a_clear_error(tiny_source, tmp_path, sha256_of_files):
    root = tiny_source.write(tmp_path / "raw")
    name = tiny_source.spec.files[0].name
    path = root / f"{name}.gz"
    path.write_bytes(path.read_bytes()[:-20])
    before = sha256_of_files(root)

    with pytest.raises(RawDataCorruptError) as info:
        load_raw_images("tiny", root, download=False)
    assert isinstance(info.value, RawDataError)
    assert str(path) in str(info.value)
    assert "truncated" in str(info.value)
    assert sha256_of_files(root) == before


def test_not_gzip_data_in_gz_file_is_a_clear_error(tiny_source, tmp_path):
    root = tiny_source.write(tmp_path / "raw")
    path = root / f"{tiny_source.spec.files[1].name}.gz"
    path.write_bytes(b"this is not gzip data at all")
    with pytest.raises(RawDataCorruptError, match=str(path).replace("\\", "\\\\")):
        load_raw_images("tiny", root, download=False)


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


# --- download -------------------------------------------------------------------------------


class FakeMirrors:
    """Stands in for torchvision's download_url: serves bytes per URL, raises for others."""

    def __init__(self, served: dict[str, bytes]):
        self.served = served
        self.calls: list[str] = []

    def __call__(self, url: str, folder: Path, filename: str) -> None:
        self.calls.append(url)
        if url not in self.served:
            (folder / filename).write_bytes(b"partial")  # a failed download leaves a stub
            raise OSError(f"cannot reach {url}")
        (folder / filename).write_bytes(self.served[url])


def test_download_tries_mirrors_in_turn(tiny_source, tmp_path, monkeypatch):
    mirror_b = tiny_source.spec.mirrors[1]
    fake = FakeMirrors(
        {f"{mirror_b}{name}.gz": gzip.compress(c) for name, c in tiny_source.contents.items()}
    )
    monkeypatch.setattr(sources, "_download_url", fake)
    root = tmp_path / "raw" / "tiny"  # created on demand

    _assert_matches(load_raw_images("tiny", root, download=True), tiny_source)
    assert len(fake.calls) == 8  # 4 files x (failing mirror a, working mirror b)
    assert sorted(p.name for p in root.iterdir()) == sorted(f"{n}.gz" for n in tiny_source.contents)
    # Second load uses the local files.
    fake.calls.clear()
    _assert_matches(load_raw_images("tiny", root, download=True), tiny_source)
    assert fake.calls == []


def test_download_only_fetches_missing_files(tiny_source, tmp_path, monkeypatch, sha256_of_files):
    names = [f.name for f in tiny_source.spec.files]
    root = tiny_source.write(tmp_path / "raw", compressed=False, only=tuple(names[1:]))
    before = sha256_of_files(root)
    mirror_a = tiny_source.spec.mirrors[0]
    fake = FakeMirrors({f"{mirror_a}{names[0]}.gz": gzip.compress(tiny_source.contents[names[0]])})
    monkeypatch.setattr(sources, "_download_url", fake)

    _assert_matches(load_raw_images("tiny", root), tiny_source)
    assert fake.calls == [f"{mirror_a}{names[0]}.gz"]
    after = sha256_of_files(root)
    assert {k: after[k] for k in before} == before
    assert set(after) - set(before) == {f"{names[0]}.gz"}


def test_failed_download_leaves_root_as_it_was(tiny_source, tmp_path, monkeypatch, sha256_of_files):
    names = [f.name for f in tiny_source.spec.files]
    root = tiny_source.write(tmp_path / "raw", only=(names[0],))
    before = sha256_of_files(root)
    monkeypatch.setattr(sources, "_download_url", FakeMirrors({}))

    with pytest.raises(RawDataNotFoundError) as info:
        load_raw_images("tiny", root, download=True)
    message = str(info.value)
    assert "Downloading them failed" in message
    assert f"{tiny_source.spec.mirrors[0]}{names[1]}.gz" in message
    assert "cannot reach" in message
    assert str(root.resolve()) in message and "raw_images" in message
    assert sha256_of_files(root) == before
    assert sorted(p.name for p in root.iterdir()) == [f"{names[0]}.gz"]  # no stubs, no temp dirs


def test_corrupt_download_is_not_kept(tiny_source, tmp_path, monkeypatch):
    """A mirror serving other content fails the checksum; the next mirror is tried."""
    mirror_a, mirror_b = tiny_source.spec.mirrors
    served = {}
    for name, content in tiny_source.contents.items():
        served[f"{mirror_a}{name}.gz"] = gzip.compress(content[:-1] + bytes([content[-1] ^ 1]))
        served[f"{mirror_b}{name}.gz"] = gzip.compress(content)
    monkeypatch.setattr(sources, "_download_url", FakeMirrors(served))
    root = tmp_path / "raw"
    _assert_matches(load_raw_images("tiny", root), tiny_source)

    # Only the bad mirror: nothing lands in root and the error says why.
    served = {k: v for k, v in served.items() if k.startswith(mirror_a)}
    monkeypatch.setattr(sources, "_download_url", FakeMirrors(served))
    other = tmp_path / "other"
    with pytest.raises(RawDataNotFoundError, match="RawDataChecksumError"):
        load_raw_images("tiny", other)
    assert list(other.iterdir()) == []


def test_download_helper_uses_torchvision(monkeypatch, tmp_path):
    utils = pytest.importorskip("torchvision.datasets.utils")
    seen = {}

    def fake_download_url(url, root, filename=None, md5=None):
        seen.update(url=url, root=root, filename=filename)

    monkeypatch.setattr(utils, "download_url", fake_download_url)
    sources._download_url("https://example.invalid/x.gz", tmp_path, "x.gz")
    assert seen == {"url": "https://example.invalid/x.gz", "root": str(tmp_path), "filename": "x.gz"}


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
