"""Checksum verification and download of raw files: decompressed checksums, corrupt files,
mirrors in turn, nothing kept that fails verification, torchvision as the downloader."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest

from supermask_pipeline.images import download
from supermask_pipeline.images.errors import (
    RawDataChecksumError,
    RawDataCorruptError,
    RawDataError,
    RawDataNotFoundError,
)
from supermask_pipeline.images.sources import load_raw_images


# --- checksum verification ------------------------------------------------------------------


def test_recompressed_gz_is_accepted(tiny_source, tmp_path):
    """Checksums are over decompressed bytes: other gzip settings give other .gz bytes."""
    first = tiny_source.write(tmp_path / "a")
    second = tmp_path / "b"
    second.mkdir()
    for name, content in tiny_source.contents.items():
        (second / f"{name}.gz").write_bytes(gzip.compress(content, compresslevel=1, mtime=12345))
    name = next(iter(tiny_source.contents))
    assert (first / f"{name}.gz").read_bytes() != (second / f"{name}.gz").read_bytes()
    tiny_source.assert_loaded(load_raw_images("tiny", second, download=False))


def test_checksum_mismatch_names_file_and_both_checksums(tiny_source, tmp_path, sha256_of_files):
    root = tiny_source.write(tmp_path / "raw")
    spec_file = tiny_source.spec.files[2]  # test images
    content = bytearray(tiny_source.contents[spec_file.name])
    content[-1] ^= 0xFF  # same size, same header: a well-formed file, so most likely another dataset
    bad = root / f"{spec_file.name}.gz"
    bad.write_bytes(gzip.compress(bytes(content), mtime=0))
    before = sha256_of_files(root)

    with pytest.raises(RawDataChecksumError) as info:
        load_raw_images("tiny", root, download=True)  # present files are never re-downloaded
    message = str(info.value)
    assert str(bad) in message
    assert spec_file.sha256 in message
    assert hashlib.sha256(bytes(content)).hexdigest() in message
    assert "most likely another dataset" in message and "its own dataset entry" in message
    assert "Delete" not in message
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
    monkeypatch.setattr(download, "_download_url", fake)
    root = tmp_path / "raw" / "tiny"  # created on demand

    tiny_source.assert_loaded(load_raw_images("tiny", root, download=True))
    assert len(fake.calls) == 8  # 4 files x (failing mirror a, working mirror b)
    assert sorted(p.name for p in root.iterdir()) == sorted(f"{n}.gz" for n in tiny_source.contents)
    # Second load uses the local files.
    fake.calls.clear()
    tiny_source.assert_loaded(load_raw_images("tiny", root, download=True))
    assert fake.calls == []


def test_download_only_fetches_missing_files(tiny_source, tmp_path, monkeypatch, sha256_of_files):
    names = [f.name for f in tiny_source.spec.files]
    root = tiny_source.write(tmp_path / "raw", compressed=False, only=tuple(names[1:]))
    before = sha256_of_files(root)
    mirror_a = tiny_source.spec.mirrors[0]
    fake = FakeMirrors({f"{mirror_a}{names[0]}.gz": gzip.compress(tiny_source.contents[names[0]])})
    monkeypatch.setattr(download, "_download_url", fake)

    tiny_source.assert_loaded(load_raw_images("tiny", root))
    assert fake.calls == [f"{mirror_a}{names[0]}.gz"]
    after = sha256_of_files(root)
    assert {k: after[k] for k in before} == before
    assert set(after) - set(before) == {f"{names[0]}.gz"}


def test_failed_download_leaves_root_as_it_was(tiny_source, tmp_path, monkeypatch, sha256_of_files):
    names = [f.name for f in tiny_source.spec.files]
    root = tiny_source.write(tmp_path / "raw", only=(names[0],))
    before = sha256_of_files(root)
    monkeypatch.setattr(download, "_download_url", FakeMirrors({}))

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
    monkeypatch.setattr(download, "_download_url", FakeMirrors(served))
    root = tmp_path / "raw"
    tiny_source.assert_loaded(load_raw_images("tiny", root))

    # Only the bad mirror: nothing lands in root and the error says why.
    served = {k: v for k, v in served.items() if k.startswith(mirror_a)}
    monkeypatch.setattr(download, "_download_url", FakeMirrors(served))
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
    download._download_url("https://example.invalid/x.gz", tmp_path, "x.gz")
    assert seen == {"url": "https://example.invalid/x.gz", "root": str(tmp_path), "filename": "x.gz"}

