"""Write small CIFAR-10 data in the official python format, for tests (no real CIFAR-10 here).

The official ``cifar-10-python.tar.gz`` (Krizhevsky 2009,
https://www.cs.toronto.edu/~kriz/cifar.html) holds ``cifar-10-batches-py/`` with
``data_batch_1`` .. ``data_batch_5``, ``test_batch``, ``batches.meta`` and ``readme.html``.
Each batch is a Python 2 cPickle (protocol 2) of a dict with ``data`` (uint8 (N, 3072),
channel-first rows), ``labels`` (list of int), ``batch_label`` and ``filenames``; all
strings are Python 2 ``str``, stored with the (SHORT_)BINSTRING opcodes, and the array
refers to ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and ``numpy.dtype``.

Python 3's ``pickle.dump(..., protocol=2)`` writes bytes differently (as calls of
``_codecs.encode``, a global the official files never name), so :func:`dump_py2_pickle`
writes those opcodes the way Python 2 did; the loader's restricted unpickler therefore
sees the same opcodes and globals as in the real files.

Usage from any test::

    from tests.images.cifar_format import make_cifar_spec, write_cifar_archive

    archive = write_cifar_archive(root, train_batches, test_batch)
    spec = make_cifar_spec(train_batches, test_batch, archive=archive)
    monkeypatch.setitem(RAW_SOURCES, spec.name, spec)
    raw = load_raw_images(spec.name, root, download=False)
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import pickle
import struct
import tarfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from supermask_pipeline.images.specs import RAW_SOURCES, RawSourceSpec

__all__ = [
    "ARCHIVE_NAME",
    "BATCHES_FOLDER",
    "Batch",
    "cifar_batch_files",
    "dump_py2_pickle",
    "encode_batch",
    "make_cifar_spec",
    "random_batch",
    "write_cifar_archive",
    "write_cifar_folder",
]

ARCHIVE_NAME = "cifar-10-python.tar.gz"
BATCHES_FOLDER = "cifar-10-batches-py"
LABEL_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)

#: One batch: images, uint8 (N, 32, 32, 3) NHWC or (N, 3072) rows as stored, and N labels.
Batch = tuple[np.ndarray, Sequence[int]]


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler lets us replace single opcodes
    """Protocol-2 pickler that writes ``bytes`` and ``str`` as Python 2 ``str`` and numpy's
    core module under its numpy 1 name, as Python 2 cPickle wrote the official batches."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes | str) -> None:
        data = obj if isinstance(obj, bytes) else obj.encode("latin-1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str

    def save_global(self, obj: object, name: str | None = None) -> None:
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__name__}\n".encode("ascii"))
        self.memoize(obj)


def dump_py2_pickle(obj: object) -> bytes:
    """Pickle ``obj`` (dicts, lists, ints, bytes, numpy arrays) as Python 2 cPickle protocol 2."""
    stream = io.BytesIO()
    _Py2Pickler(stream, protocol=2).dump(obj)
    return stream.getvalue()


def encode_batch(
    images: np.ndarray,
    labels: Sequence[int],
    batch_label: bytes,
    filenames: Sequence[bytes] | None = None,
) -> bytes:
    """One batch file: ``{b"data", b"labels", b"batch_label", b"filenames"}`` pickled as above.

    Args:
        images: uint8 (N, 32, 32, 3) NHWC (stored as channel-first rows) or (N, 3072) rows
            stored as given.
        labels: N ints (stored as a list of int, as in the official files).
        batch_label: e.g. ``b"training batch 1 of 5"``.
        filenames: N names; default ``b"image_<i>.png"``.
    """
    images = np.asarray(images)
    rows = images if images.ndim == 2 else images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    rows = np.ascontiguousarray(rows)
    if filenames is None:
        filenames = [f"image_{i:05d}.png".encode() for i in range(len(rows))]
    return dump_py2_pickle(
        {
            b"data": rows,
            b"labels": [int(label) for label in labels],
            b"batch_label": batch_label,
            b"filenames": list(filenames),
        }
    )


def cifar_batch_files(train_batches: Sequence[Batch], test_batch: Batch) -> dict[str, bytes]:
    """File name -> content of every file of ``cifar-10-batches-py/`` (batches, meta, readme)."""
    count = len(train_batches)
    files = {
        f"data_batch_{i}": encode_batch(images, labels, f"training batch {i} of {count}".encode())
        for i, (images, labels) in enumerate(train_batches, start=1)
    }
    files["test_batch"] = encode_batch(*test_batch, b"testing batch 1 of 1")
    files["batches.meta"] = dump_py2_pickle(
        {
            b"num_cases_per_batch": len(train_batches[0][1]),
            b"label_names": [name.encode() for name in LABEL_NAMES],
            b"num_vis": 3072,
        }
    )
    files["readme.html"] = (
        b'<meta HTTP-EQUIV="REFRESH" content="0; URL=http://www.cs.toronto.edu/~kriz/cifar.html">\n'
    )
    return files


def write_cifar_folder(root: Path, train_batches: Sequence[Batch], test_batch: Batch) -> Path:
    """Write the extracted layout ``root/cifar-10-batches-py/<files>``; returns that folder."""
    folder = Path(root) / BATCHES_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in cifar_batch_files(train_batches, test_batch).items():
        (folder / name).write_bytes(content)
    return folder


def write_cifar_archive(folder: Path, train_batches: Sequence[Batch], test_batch: Batch) -> Path:
    """Write ``folder/cifar-10-python.tar.gz`` (gzipped tar of ``cifar-10-batches-py/``).

    Args:
        folder: where the archive goes (created if needed), e.g. the ``raw_images`` root.
        train_batches: the training batches, written as ``data_batch_1``, ``data_batch_2`` ...
        test_batch: written as ``test_batch``.

    Returns:
        The archive's path. Its bytes are the same for the same arguments (mtime 0).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ARCHIVE_NAME
    with gzip.GzipFile(path, "wb", mtime=0) as compressed:
        with tarfile.open(fileobj=compressed, mode="w", format=tarfile.GNU_FORMAT) as tar:
            info = tarfile.TarInfo(BATCHES_FOLDER)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
            for name, content in cifar_batch_files(train_batches, test_batch).items():
                info = tarfile.TarInfo(f"{BATCHES_FOLDER}/{name}")
                info.size, info.mode = len(content), 0o644
                tar.addfile(info, io.BytesIO(content))
    return path


def make_cifar_spec(
    train_batches: Sequence[Batch],
    test_batch: Batch,
    archive: Path | None = None,
    name: str = "tiny_cifar10",
) -> RawSourceSpec:
    """A copy of ``RAW_SOURCES["cifar10"]`` with the checksums and sizes of these batches.

    The files are ``data_batch_1`` .. ``data_batch_<k>`` and ``test_batch`` with their md5,
    size and number of images; the archive's md5 and size are those of ``archive`` (the
    published ones, which no test archive matches, when None). Mirrors are unreachable
    ``.invalid`` URLs. Register it with ``monkeypatch.setitem(RAW_SOURCES, spec.name, spec)``.
    """
    cifar10 = RAW_SOURCES["cifar10"]
    by_name = {f.name: f for f in cifar10.files}
    contents = cifar_batch_files(train_batches, test_batch)
    counts = {f"data_batch_{i}": len(b[1]) for i, b in enumerate(train_batches, start=1)}
    counts["test_batch"] = len(test_batch[1])
    files = tuple(
        dataclasses.replace(
            by_name[file_name],
            md5=hashlib.md5(contents[file_name]).hexdigest(),
            num_bytes=len(contents[file_name]),
            num_images=count,
        )
        for file_name, count in counts.items()
    )
    assert cifar10.archive is not None
    archive_spec = cifar10.archive
    if archive is not None:
        data = Path(archive).read_bytes()
        archive_spec = dataclasses.replace(
            archive_spec, md5=hashlib.md5(data).hexdigest(), num_bytes=len(data)
        )
    return dataclasses.replace(
        cifar10,
        name=name,
        files=files,
        archive=archive_spec,
        mirrors=("https://mirror-a.invalid/", "https://mirror-b.invalid/"),
    )


def random_batch(num: int, rng: np.random.Generator, offset: int = 0) -> Batch:
    """``num`` random NHWC uint8 (num, 32, 32, 3) images, unique by their index in two pixels,
    and labels ``(offset + i) % 10``."""
    images = rng.integers(0, 256, size=(num, 32, 32, 3), dtype=np.uint8)
    index = np.arange(num) + offset
    images[:, 0, 0, 0] = index % 256
    images[:, 0, 0, 1] = index // 256
    return images, [int(i % 10) for i in index]
