"""CIFAR-10 raw source: archive and batch checksums, safe extraction, restricted unpickling,
NHWC layout and splitting, on tiny data written in the official python format."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from supermask_pipeline.images import download
from supermask_pipeline.images.cifar import parse_cifar_batch
from supermask_pipeline.images.errors import (
    RawDataChecksumError,
    RawDataCorruptError,
    RawDataNotFoundError,
)
from supermask_pipeline.images.sources import load_raw_images, missing_raw_files
from supermask_pipeline.images.specs import RAW_SOURCES, RawSourceSpec
from supermask_pipeline.images.splitting import split_dataset
from tests.images.cifar_format import (
    ARCHIVE_NAME,
    BATCHES_FOLDER,
    Batch,
    cifar_batch_files,
    dump_py2_pickle,
    encode_batch,
    make_cifar_spec,
    random_batch,
    write_cifar_archive,
    write_cifar_folder,
)

# --- fixtures and helpers -------------------------------------------------------------------


@dataclass
class TinyCifar:
    """Two training batches of 20 images and a test batch of 10, in the official format."""

    train: list[Batch]
    test: Batch

    def archive(self, root: Path) -> Path:
        return write_cifar_archive(root, self.train, self.test)

    def folder(self, root: Path) -> Path:
        return write_cifar_folder(root, self.train, self.test)

    def register(self, monkeypatch, archive: Path | None = None) -> RawSourceSpec:
        spec = make_cifar_spec(self.train, self.test, archive=archive)
        monkeypatch.setitem(RAW_SOURCES, spec.name, spec)
        return spec

    @property
    def train_images(self) -> np.ndarray:
        return np.concatenate([images for images, _ in self.train])

    @property
    def train_labels(self) -> np.ndarray:
        return np.concatenate([np.asarray(labels) for _, labels in self.train])


@pytest.fixture
def tiny() -> TinyCifar:
    rng = np.random.default_rng(2009)
    return TinyCifar(
        train=[random_batch(20, rng), random_batch(20, rng, offset=20)],
        test=random_batch(10, rng, offset=1000),
    )


def _register_as_on_disk(monkeypatch, spec: RawSourceSpec, folder: Path) -> RawSourceSpec:
    """Re-register ``spec`` with the md5 of the batch files as they are now in ``folder``,
    so that a deliberately malformed file passes its checksum and reaches the parser."""
    files = tuple(
        dataclasses.replace(
            f,
            md5=hashlib.md5((folder / f.name).read_bytes()).hexdigest(),
            num_bytes=(folder / f.name).stat().st_size,
        )
        for f in spec.files
    )
    spec = dataclasses.replace(spec, files=files)
    monkeypatch.setitem(RAW_SOURCES, spec.name, spec)
    return spec


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# --- the real spec ----------------------------------------------------------------------------


def test_cifar10_spec_matches_torchvision():
    datasets = pytest.importorskip("torchvision.datasets")
    spec = RAW_SOURCES["cifar10"]
    torch_cifar = datasets.CIFAR10
    assert spec.archive.name == torch_cifar.filename == "cifar-10-python.tar.gz"
    assert spec.archive.md5 == torch_cifar.tgz_md5 == "c58f30108f718f92721af3b95e74349a"
    assert spec.archive.folder == torch_cifar.base_folder
    assert [spec.mirrors[0] + spec.archive.name] == [torch_cifar.url]
    assert [[f.name, f.md5] for f in spec.files] == torch_cifar.train_list + torch_cifar.test_list


def test_cifar10_spec_shapes_and_counts():
    spec = RAW_SOURCES["cifar10"]
    assert spec.image_shape == (32, 32, 3) and spec.num_classes == 10
    train = [f for f in spec.files if f.role.startswith("train")]
    test = [f for f in spec.files if f.role.startswith("test")]
    assert sum(f.num_images for f in train) == 50000 and sum(f.num_images for f in test) == 10000
    assert all(f.sha256 == "" and len(f.md5) == 32 for f in spec.files)  # md5 is what is published


# --- loading: archive, extracted folder, round trip ------------------------------------------------


def test_archive_round_trip(tiny, tmp_path, monkeypatch, sha256_of_files):
    root = tmp_path / "cifar10"
    archive = tiny.archive(root)
    spec = tiny.register(monkeypatch, archive=archive)
    archive_sha = hashlib.sha256(archive.read_bytes()).hexdigest()

    raw = load_raw_images(spec.name, root, download=False)

    assert raw.source == spec.name and raw.num_classes == 10
    assert raw.train_images.shape == (40, 32, 32, 3) and raw.train_images.dtype == np.uint8
    assert raw.test_images.shape == (10, 32, 32, 3) and raw.test_images.dtype == np.uint8
    assert raw.train_labels.dtype == np.int64 and raw.test_labels.dtype == np.int64
    np.testing.assert_array_equal(raw.train_images, tiny.train_images)
    np.testing.assert_array_equal(raw.train_labels, tiny.train_labels)
    np.testing.assert_array_equal(raw.test_images, tiny.test[0])
    np.testing.assert_array_equal(raw.test_labels, tiny.test[1])
    assert raw.train_images.flags.c_contiguous and raw.train_images.flags.writeable
    folder = root / BATCHES_FOLDER
    assert raw.checksums == {
        f.name: hashlib.sha256((folder / f.name).read_bytes()).hexdigest() for f in spec.files
    }
    # Extracted whole (meta and readme too) next to the untouched archive; no temp folders left.
    assert sorted(p.name for p in root.iterdir()) == sorted([ARCHIVE_NAME, BATCHES_FOLDER])
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["batches.meta", "data_batch_1", "data_batch_2", "readme.html", "test_batch"]
    )
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == archive_sha

    # The second load reads the extracted folder: it works without the archive.
    before = sha256_of_files(folder)
    archive.unlink()
    again = load_raw_images(spec.name, root, download=False)
    np.testing.assert_array_equal(again.train_images, raw.train_images)
    assert again.checksums == raw.checksums
    assert sha256_of_files(folder) == before


def test_extracted_folder_without_archive(tiny, tmp_path, monkeypatch):
    folder = tiny.folder(tmp_path)
    spec = tiny.register(monkeypatch)  # archive md5: the published one; never looked at here
    assert missing_raw_files(spec.name, tmp_path) == []
    raw = load_raw_images(spec.name, tmp_path, download=False)
    np.testing.assert_array_equal(raw.test_images, tiny.test[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]


def test_nhwc_layout_of_official_rows(tmp_path, monkeypatch):
    """Value (c, h, w) of a row, at index c * 1024 + h * 32 + w, lands at images[n, h, w, c]."""
    rng = np.random.default_rng(7)
    rows = [rng.integers(0, 256, size=(n, 3072), dtype=np.uint8) for n in (3, 3, 2)]
    train = [(rows[0], [0, 1, 2]), (rows[1], [3, 4, 5])]
    test = (rows[2], [9, 8])
    write_cifar_folder(tmp_path, train, test)
    spec = make_cifar_spec(train, test)
    monkeypatch.setitem(RAW_SOURCES, spec.name, spec)

    raw = load_raw_images(spec.name, tmp_path, download=False)

    h, w, c = np.indices((32, 32, 3))
    flat_index = c * 1024 + h * 32 + w
    np.testing.assert_array_equal(raw.train_images, np.concatenate(rows[:2])[:, flat_index])
    np.testing.assert_array_equal(raw.test_images, rows[2][:, flat_index])
    assert raw.train_images[1, 5, 7, 2] == rows[0][1, 2 * 1024 + 5 * 32 + 7]  # one pixel by hand
    assert raw.train_labels.tolist() == [0, 1, 2, 3, 4, 5] and raw.test_labels.tolist() == [9, 8]


def test_partial_folder_gets_only_its_missing_files_from_the_archive(tiny, tmp_path, monkeypatch):
    root = tmp_path / "cifar10"
    archive = tiny.archive(root)
    folder = tiny.folder(root)
    spec = tiny.register(monkeypatch, archive=archive)
    (folder / "data_batch_2").unlink()
    (folder / "readme.html").write_bytes(b"kept as it is")
    kept = (folder / "data_batch_1").stat().st_mtime_ns

    raw = load_raw_images(spec.name, root, download=False)

    np.testing.assert_array_equal(raw.train_images, tiny.train_images)
    assert (folder / "data_batch_2").is_file()
    assert (folder / "data_batch_1").stat().st_mtime_ns == kept
    assert (folder / "readme.html").read_bytes() == b"kept as it is"
    assert sorted(p.name for p in root.iterdir()) == sorted([ARCHIVE_NAME, BATCHES_FOLDER])


# --- checksums, both ways -----------------------------------------------------------------------


def test_archive_md5_mismatch_names_file_and_both_checksums(tiny, tmp_path, monkeypatch):
    root = tmp_path / "cifar10"
    archive = tiny.archive(root)
    spec = tiny.register(monkeypatch, archive=archive)
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(data)
    before = hashlib.sha256(archive.read_bytes()).hexdigest()

    with pytest.raises(RawDataChecksumError) as info:
        load_raw_images(spec.name, root, download=True)  # a present archive is never re-downloaded
    message = str(info.value)
    assert str(archive) in message
    assert spec.archive.md5 in message and hashlib.md5(data).hexdigest() in message
    assert "damaged copy" in message and "left as it is" in message
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in root.iterdir()) == [ARCHIVE_NAME]  # nothing extracted


def test_extracted_batch_md5_mismatch_names_file_and_both_checksums(
    tiny, tmp_path, monkeypatch, sha256_of_files
):
    folder = tiny.folder(tmp_path)
    spec = tiny.register(monkeypatch)
    bad = folder / "data_batch_2"
    content = bytearray(bad.read_bytes())
    content[len(content) // 2] ^= 0x01  # inside the pixel data: still a valid pickle
    bad.write_bytes(content)
    expected = next(f.md5 for f in spec.files if f.name == "data_batch_2")
    before = sha256_of_files(tmp_path)

    with pytest.raises(RawDataChecksumError) as info:
        load_raw_images(spec.name, tmp_path, download=False)
    message = str(info.value)
    assert str(bad) in message
    assert expected in message and hashlib.md5(content).hexdigest() in message
    assert sha256_of_files(tmp_path) == before


def test_archive_member_md5_mismatch_extracts_nothing(tiny, tmp_path, monkeypatch):
    """The archive has its md5, but a batch inside it does not: no folder appears."""
    root = tmp_path / "cifar10"
    archive = tiny.archive(root)
    spec = tiny.register(monkeypatch, archive=archive)
    files = tuple(
        dataclasses.replace(f, md5="0" * 32) if f.name == "test_batch" else f for f in spec.files
    )
    monkeypatch.setitem(RAW_SOURCES, spec.name, dataclasses.replace(spec, files=files))

    with pytest.raises(RawDataChecksumError, match=rf"{BATCHES_FOLDER}/test_batch in .*{ARCHIVE_NAME}"):
        load_raw_images(spec.name, root, download=False)
    assert sorted(p.name for p in root.iterdir()) == [ARCHIVE_NAME]


# --- restricted unpickling and malformed batches -------------------------------------------------


def test_refuses_pickle_that_calls_os_system(tmp_path):
    marker = tmp_path / "executed"
    payload = (
        b"\x80\x02cos\nsystem\nq\x00X"
        + len(f"touch {marker}").to_bytes(4, "little")
        + f"touch {marker}".encode()
        + b"\x85R."
    )
    with pytest.raises(RawDataCorruptError) as info:
        parse_cifar_batch(payload, "data_batch_1")
    assert "data_batch_1" in str(info.value) and "os.system" in str(info.value)
    assert not marker.exists()


def test_refused_global_in_a_batch_file_on_disk(tiny, tmp_path, monkeypatch):
    """Through load_raw_images: the file passes its checksum and is still refused."""
    folder = tiny.folder(tmp_path)
    marker = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return (eval, (f"open({str(marker)!r}, 'w')",))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}, protocol=4))
    spec = _register_as_on_disk(monkeypatch, tiny.register(monkeypatch), folder)
    refused = r"test_batch: refused to unpickle the global builtins\.eval"
    with pytest.raises(RawDataCorruptError, match=refused):
        load_raw_images(spec.name, tmp_path, download=False)
    assert not marker.exists()


def test_numpy_2_spelling_is_accepted_and_plain_py3_protocol_2_is_not():
    images, labels = random_batch(4, np.random.default_rng(0))
    rows = images.transpose(0, 3, 1, 2).reshape(4, -1)
    batch = {b"data": rows, b"labels": labels}
    # Protocol 4 stores bytes without any global; numpy 2 names numpy._core.multiarray.
    modern = pickle.dumps(batch, protocol=4)
    assert b"numpy._core.multiarray" in modern or b"numpy.core.multiarray" in modern
    parsed, parsed_labels = parse_cifar_batch(modern, "modern")
    np.testing.assert_array_equal(parsed, images)
    assert parsed_labels.tolist() == labels
    # Python 3's protocol 2 writes bytes as _codecs.encode calls, which no official file holds.
    with pytest.raises(RawDataCorruptError, match=r"_codecs\.encode"):
        parse_cifar_batch(pickle.dumps(batch, protocol=2), "py3")


def test_official_batch_names_only_the_numpy_globals():
    """The helper writes what the official files hold: Python 2 strings, numpy.core globals."""
    import pickletools

    data = encode_batch(*random_batch(2, np.random.default_rng(1)), b"training batch 1 of 5")
    globals_named = {arg for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}
    assert globals_named == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    assert {op.name for op, _, _ in pickletools.genops(data)} & {"BINUNICODE", "BINBYTES"} == set()


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda b: b[: len(b) // 2], "truncated or not a pickle"),
        (lambda b: b[:-1], "truncated or not a pickle"),  # no STOP opcode
        (lambda b: b + b"\x00", "1 bytes follow the end"),
        (lambda b: b"not a pickle at all", "not a readable CIFAR-10 python batch"),
    ],
    ids=["half", "no-stop", "trailing", "garbage"],
)
def test_truncated_or_damaged_batch(tiny, tmp_path, monkeypatch, damage, match):
    folder = tiny.folder(tmp_path)
    path = folder / "data_batch_1"
    path.write_bytes(damage(path.read_bytes()))
    spec = _register_as_on_disk(monkeypatch, tiny.register(monkeypatch), folder)
    with pytest.raises(RawDataCorruptError, match=match) as info:
        load_raw_images(spec.name, tmp_path, download=False)
    assert "data_batch_1" in str(info.value)


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        ({b"data": np.zeros((20, 3071), np.uint8), b"labels": [0] * 20}, r"uint8 array \(N, 3072\)"),
        ({b"data": np.zeros((20, 3072), np.int16), b"labels": [0] * 20}, r"found int16 \(20, 3072\)"),
        ({b"data": np.zeros((19, 3072), np.uint8), b"labels": [0] * 19}, "expected 20 images, found 19"),
        ({b"data": np.zeros((20, 3072), np.uint8), b"labels": [0] * 19}, "expected 20 labels"),
        ({b"data": np.zeros((20, 3072), np.uint8), b"labels": [0] * 19 + [10]}, r"found \[0, 10\]"),
        ({b"data": np.zeros((20, 3072), np.uint8), b"labels": [-1] + [0] * 19}, r"found \[-1, 0\]"),
        ({b"data": np.zeros((20, 3072), np.uint8), b"labels": [0.5] * 20}, "list of integers"),
        ({b"labels": [0] * 20}, "keys b'data' and b'labels'"),
        ([1, 2, 3], "found list"),
    ],
    ids=["row-length", "dtype", "rows", "label-count", "label-10", "label-negative", "float-labels",
         "no-data", "not-a-dict"],
)
def test_malformed_batch_content(tiny, tmp_path, monkeypatch, batch, match):
    folder = tiny.folder(tmp_path)
    (folder / "data_batch_2").write_bytes(dump_py2_pickle(batch))
    spec = _register_as_on_disk(monkeypatch, tiny.register(monkeypatch), folder)
    with pytest.raises(RawDataCorruptError, match=match) as info:
        load_raw_images(spec.name, tmp_path, download=False)
    assert str(info.value).startswith("data_batch_2: ")


# --- missing files, download and extraction safety ---------------------------------------------


def test_missing_without_download_names_folder_files_archive_and_catalog(tiny, tmp_path, monkeypatch):
    spec = tiny.register(monkeypatch)
    root = tmp_path / "data" / "01_raw" / "cifar10"
    assert missing_raw_files(spec.name, root) == ["data_batch_1", "data_batch_2", "test_batch"]
    with pytest.raises(RawDataNotFoundError) as info:
        load_raw_images(spec.name, root, download=False)
    message = str(info.value)
    assert str(root.resolve()) in message
    for name in ("data_batch_1", "data_batch_2", "test_batch"):
        assert f"{BATCHES_FOLDER}/{name}" in message
    assert ARCHIVE_NAME in message
    assert "download=False" in message and "raw_images" in message
    assert "conf/local/catalog.yml" in message
    assert not root.exists()


def test_real_spec_without_files_is_not_found(tmp_path):
    with pytest.raises(RawDataNotFoundError, match="cifar-10-batches-py/data_batch_5"):
        load_raw_images("cifar10", tmp_path / "cifar10", download=False)


def test_missing_raw_files_counts_the_archive(tiny, tmp_path, monkeypatch):
    spec = tiny.register(monkeypatch, archive=tiny.archive(tmp_path))
    assert missing_raw_files(spec.name, tmp_path) == []


class FakeMirrors:
    """Stands in for torchvision's download_url: serves bytes per URL, raises for others."""

    def __init__(self, served: dict[str, bytes]):
        self.served = served
        self.calls: list[tuple[str, str | None]] = []

    def __call__(self, url: str, folder: Path, filename: str, md5: str | None = None) -> None:
        self.calls.append((url, md5))
        if url not in self.served:
            (folder / filename).write_bytes(b"partial")
            raise OSError(f"cannot reach {url}")
        (folder / filename).write_bytes(self.served[url])


def test_download_archive_with_its_md5_then_extract(tiny, tmp_path, monkeypatch):
    archive = tiny.archive(tmp_path / "served")
    spec = tiny.register(monkeypatch, archive=archive)
    mirror_a, mirror_b = spec.mirrors
    fake = FakeMirrors({f"{mirror_b}{ARCHIVE_NAME}": archive.read_bytes()})
    monkeypatch.setattr(download, "_download_url", fake)
    root = tmp_path / "raw" / "cifar10"

    raw = load_raw_images(spec.name, root, download=True)

    np.testing.assert_array_equal(raw.train_images, tiny.train_images)
    assert fake.calls == [
        (f"{mirror_a}{ARCHIVE_NAME}", spec.archive.md5),  # torchvision checks the md5 too
        (f"{mirror_b}{ARCHIVE_NAME}", spec.archive.md5),
    ]
    assert sorted(p.name for p in root.iterdir()) == sorted([ARCHIVE_NAME, BATCHES_FOLDER])
    assert _md5(root / ARCHIVE_NAME) == spec.archive.md5
    fake.calls.clear()
    load_raw_images(spec.name, root, download=True)
    assert fake.calls == []


def test_failed_or_corrupt_download_leaves_nothing(tiny, tmp_path, monkeypatch):
    archive = tiny.archive(tmp_path / "served")
    spec = tiny.register(monkeypatch, archive=archive)
    mirror_a, _ = spec.mirrors
    data = bytearray(archive.read_bytes())
    data[100] ^= 1
    fake = FakeMirrors({f"{mirror_a}{ARCHIVE_NAME}": bytes(data)})
    monkeypatch.setattr(download, "_download_url", fake)
    root = tmp_path / "raw"

    with pytest.raises(RawDataNotFoundError) as info:
        load_raw_images(spec.name, root, download=True)
    message = str(info.value)
    assert "Downloading them failed" in message
    assert f"{mirror_a}{ARCHIVE_NAME}: RawDataChecksumError" in message
    assert "cannot reach" in message
    assert list(root.iterdir()) == []  # no stubs, no temp folders


def test_download_helper_passes_md5_to_torchvision(monkeypatch, tmp_path):
    utils = pytest.importorskip("torchvision.datasets.utils")
    seen = {}

    def fake_download_url(url, root, filename=None, md5=None):
        seen.update(url=url, root=root, filename=filename, md5=md5)

    monkeypatch.setattr(utils, "download_url", fake_download_url)
    download._download_url("https://example.invalid/a.tar.gz", tmp_path, "a.tar.gz", md5="ab" * 16)
    assert seen == {
        "url": "https://example.invalid/a.tar.gz",
        "root": str(tmp_path),
        "filename": "a.tar.gz",
        "md5": "ab" * 16,
    }


def test_archive_escaping_its_folder_is_refused(tiny, tmp_path, monkeypatch):
    """tarfile's "data" filter refuses a member outside the target; nothing lands anywhere."""
    root = tmp_path / "deep" / "cifar10"
    root.mkdir(parents=True)
    archive = root / ARCHIVE_NAME
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../../escaped")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"oops"))
    spec = tiny.register(monkeypatch, archive=archive)

    with pytest.raises(RawDataCorruptError, match=f"{ARCHIVE_NAME} could not be extracted"):
        load_raw_images(spec.name, root, download=False)
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "deep" / "escaped").exists()
    assert sorted(p.name for p in root.iterdir()) == [ARCHIVE_NAME]


def test_archive_without_a_batch_is_corrupt(tiny, tmp_path, monkeypatch):
    root = tmp_path / "cifar10"
    root.mkdir()
    archive = root / ARCHIVE_NAME
    with tarfile.open(archive, "w:gz") as tar:
        for name, content in cifar_batch_files(tiny.train, tiny.test).items():
            if name != "data_batch_2":
                info = tarfile.TarInfo(f"{BATCHES_FOLDER}/{name}")
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    spec = tiny.register(monkeypatch, archive=archive)
    with pytest.raises(RawDataCorruptError, match=f"no member {BATCHES_FOLDER}/data_batch_2"):
        load_raw_images(spec.name, root, download=False)
    assert sorted(p.name for p in root.iterdir()) == [ARCHIVE_NAME]


# --- splitting -----------------------------------------------------------------------------------


def test_split_of_tiny_cifar(tiny, tmp_path, monkeypatch):
    spec = tiny.register(monkeypatch, archive=tiny.archive(tmp_path))
    raw = load_raw_images(spec.name, tmp_path, download=False)

    train, val, test = split_dataset(raw, num_val=10, seed=0)

    assert [s.num_images for s in (train, val, test)] == [30, 10, 10]
    for split in (train, val, test):
        assert split.images.dtype == np.uint8 and split.images.shape[1:] == (32, 32, 3)
        assert split.labels.dtype == np.int64
        assert split.attrs["source"] == spec.name and split.attrs["num_classes"] == 10
        assert {f"sha256:{f.name}" for f in spec.files} <= set(split.attrs)

    def ids(split):  # the index written into two pixels of every image
        pixels = split.images[:, 0, 0, :2].astype(np.int64)
        return set((pixels[:, 0] + 256 * pixels[:, 1]).tolist())

    assert ids(train).isdisjoint(ids(val))
    assert ids(train) | ids(val) == set(range(40))
    assert ids(test) == set(range(1000, 1010))
    again = split_dataset(raw, num_val=10, seed=0)
    np.testing.assert_array_equal(again[1].images, val.images)
