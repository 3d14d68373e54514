"""Raw image sources: where the official files come from, how they are verified and parsed.

A source is one row of :data:`RAW_SOURCES`, a :class:`RawSourceSpec` naming the
official files, the mirrors they are downloaded from, their published checksums
and the function that turns their bytes into arrays. MNIST comes as four gzipped
idx files; CIFAR-10 as one archive (:class:`RawArchiveSpec`,
``cifar-10-python.tar.gz``) of python batches, which :func:`load_raw_images`
verifies and extracts before reading the files inside, the same way for any
source that names an archive.

Checksums of the files are always taken over the DECOMPRESSED bytes, so a file
re-compressed with another gzip (as in ``../shared/datasets/mnist``) is accepted,
while any change to its content is not. An archive is checked as served (its
published md5), and the files extracted from it are checked again.

The CIFAR-10 batches are pickles; they are read by an unpickler that resolves
only the three numpy globals an array needs and refuses everything else, so no
code named by a file is ever run.

This module imports no Kedro; torchvision is imported only when a download is
attempted.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import platform
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from supermask_pipeline.registry import lookup

__all__ = [
    "RAW_SOURCES",
    "RawArchiveSpec",
    "RawDataChecksumError",
    "RawDataCorruptError",
    "RawDataError",
    "RawDataNotFoundError",
    "RawFileSpec",
    "RawImageData",
    "RawSourceSpec",
    "encode_idx",
    "load_raw_images",
    "missing_raw_files",
    "parse_cifar_batch",
    "parse_idx",
]

_CHUNK_BYTES = 1 << 20


class RawDataError(Exception):
    """Base class of every error raised while locating, verifying or parsing raw files."""


class RawDataNotFoundError(RawDataError):
    """Raw files are neither in the root folder nor could be downloaded."""


class RawDataChecksumError(RawDataError):
    """A raw file's decompressed content (or an archive as served) does not have the
    published checksum."""


class RawDataCorruptError(RawDataError):
    """A raw file cannot be read, decompressed (e.g. truncated gzip), extracted or parsed,
    or a pickled batch names a global other than the numpy ones an array needs."""


@dataclass(frozen=True, eq=False)
class RawImageData:
    """The official train and test sets of one source, verified against published checksums.

    Attributes:
        train_images: uint8 array (N_train, H, W, C), pixel values 0..255.
        train_labels: int64 array (N_train,), class indices in [0, num_classes).
        test_images: uint8 array (N_test, H, W, C).
        test_labels: int64 array (N_test,).
        source: key of the source in :data:`RAW_SOURCES`, e.g. ``"mnist"``.
        checksums: official (decompressed) file name -> sha256 hex digest of its
            decompressed bytes, e.g. ``{"train-images-idx3-ubyte": "ba89..."}`` or
            ``{"data_batch_1": ...}`` (recorded even where only an md5 is published).
        num_classes: number of classes (10 for MNIST and CIFAR-10).
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str
    checksums: dict[str, str]
    num_classes: int


@dataclass(frozen=True)
class RawFileSpec:
    """One official file of a source.

    Attributes:
        name: official file name once decompressed, e.g. ``"train-images-idx3-ubyte"``.
            It is looked up as ``<name>.gz`` or ``<name>`` in the root folder, or in
            its ``<archive folder>`` for a source that comes as an archive.
        role: what the parse function uses it for, e.g. ``"train_images"``.
        sha256: sha256 hex digest of the decompressed bytes, verified on every load;
            ``""`` where none is published (CIFAR-10), and then ``md5`` is verified.
        md5: md5 hex digest of the decompressed bytes: recorded, for cross-checks
            with other tools' listings, where a sha256 is given; verified otherwise.
        num_bytes: size of the decompressed file in bytes (reported in errors).
        download_name: file name on the mirrors, e.g. ``"train-images-idx3-ubyte.gz"``;
            ``""`` for a file that is only distributed inside the source's archive.
        download_md5: md5 of ``download_name`` as served by the mirrors (the value
            torchvision's download checks); not used to accept a local file,
            because a re-compressed file has other bytes and the same content.
        num_images: number of images (rows) the file holds, checked by parse functions
            that cannot read it from a header (CIFAR-10: 10,000 per batch); None if
            the format itself states it (idx).

    Raises:
        ValueError: (on construction) neither ``sha256`` nor ``md5`` given.
    """

    name: str
    role: str
    sha256: str
    md5: str
    num_bytes: int
    download_name: str = ""
    download_md5: str = ""
    num_images: int | None = None

    def __post_init__(self) -> None:
        if not (self.sha256 or self.md5):
            raise ValueError(f"RawFileSpec {self.name!r} needs a published sha256 or md5 to verify.")


@dataclass(frozen=True)
class RawArchiveSpec:
    """A tar archive in which a source's official files are distributed (CIFAR-10).

    The archive is looked up in the root folder as ``name``; it is downloaded as
    ``mirror + name``. Its files are extracted to ``<root>/<folder>/`` and looked up
    there, so a folder extracted by hand or by torchvision (same layout) is used as is.

    Attributes:
        name: file name of the archive, e.g. ``"cifar-10-python.tar.gz"``.
        md5: md5 hex digest of the archive as served (published, e.g. torchvision's
            ``tgz_md5``); verified before anything is extracted.
        num_bytes: size of the archive in bytes (reported in errors).
        folder: folder inside the archive that holds the files, e.g.
            ``"cifar-10-batches-py"``.
    """

    name: str
    md5: str
    num_bytes: int
    folder: str


@dataclass(frozen=True)
class RawSourceSpec:
    """Description of a raw image source: files, mirrors, checksums, shape and parser.

    Attributes:
        name: key in :data:`RAW_SOURCES`.
        files: the official files, see :class:`RawFileSpec`.
        mirrors: base URLs tried in turn; a file's URL is ``mirror + download_name``,
            an archive's ``mirror + archive.name``.
        image_shape: (H, W, C) of one image.
        num_classes: number of classes.
        parse: ``parse(spec, contents)`` with ``contents`` mapping each file's
            ``role`` to its decompressed bytes; returns ``(train_images,
            train_labels, test_images, test_labels)`` as uint8 (N, H, W, C) and
            int64 (N,) arrays. Raises :class:`RawDataCorruptError` on bad content.
        reference: where the format and checksums are published.
        archive: the archive the files come in (extracted on load), or None when each
            file is downloaded and kept on its own (MNIST).
    """

    name: str
    files: tuple[RawFileSpec, ...]
    mirrors: tuple[str, ...]
    image_shape: tuple[int, int, int]
    num_classes: int
    parse: Callable[
        [RawSourceSpec, Mapping[str, bytes | bytearray]],
        tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    ]
    reference: str = ""
    archive: RawArchiveSpec | None = None


# --- idx format (LeCun et al., http://yann.lecun.com/exdb/mnist/) ------------------------------

# Third byte of the magic number -> element type; all multi-byte values are big-endian.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(data: bytes | bytearray, name: str = "<idx>") -> np.ndarray:
    """Parse the bytes of one idx file into an array.

    Format (LeCun et al., MNIST database): a 4-byte magic number ``0x00 0x00
    <type> <ndim>``, then ``ndim`` big-endian uint32 dimension sizes, then the
    elements in C order. Type 0x08 is unsigned byte (images and labels of MNIST).

    Args:
        data: the decompressed file content.
        name: file name used in error messages.

    Returns:
        Array of shape given by the header, native byte order; for type 0x08 a
        uint8 view on ``data`` (writable if ``data`` is a bytearray).

    Raises:
        RawDataCorruptError: bad magic number, unknown type, or a size that does
            not match the header.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise RawDataCorruptError(
            f"{name}: not an idx file (expected magic number 0x0000<type><ndim>, "
            f"found {bytes(data[:4]).hex() or 'an empty file'})."
        )
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_DTYPES:
        raise RawDataCorruptError(
            f"{name}: unknown idx element type 0x{type_code:02x} "
            f"(known: {', '.join(f'0x{c:02x}' for c in _IDX_DTYPES)})."
        )
    header_bytes = 4 + 4 * ndim
    if len(data) < header_bytes:
        raise RawDataCorruptError(
            f"{name}: header of {ndim} dimensions needs {header_bytes} bytes, file has {len(data)}."
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    expected = header_bytes + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise RawDataCorruptError(
            f"{name}: header says shape {shape} of {dtype} ({expected} bytes in all), "
            f"file has {len(data)} bytes."
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_bytes).reshape(shape)
    return array if dtype.byteorder in ("=", "|") else array.astype(dtype.newbyteorder("="))


def encode_idx(array: np.ndarray) -> bytes:
    """Encode an array as an idx file (inverse of :func:`parse_idx`).

    Args:
        array: any shape (at most 255 dimensions) of dtype uint8, int8, int16,
            int32, float32 or float64.

    Returns:
        The idx bytes (magic number, big-endian uint32 dimensions, big-endian data).

    Raises:
        ValueError: unsupported dtype or too many dimensions.
    """
    array = np.asarray(array)
    for code, dtype in _IDX_DTYPES.items():
        if array.dtype.kind == dtype.kind and array.dtype.itemsize == dtype.itemsize:
            break
    else:
        raise ValueError(f"idx cannot store dtype {array.dtype}.")
    if array.ndim > 255:
        raise ValueError(f"idx stores at most 255 dimensions, got {array.ndim}.")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=dtype).tobytes()


def _parse_mnist(
    spec: RawSourceSpec, contents: Mapping[str, bytes | bytearray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse the four MNIST idx files into (N, 28, 28, 1) uint8 images and int64 labels."""
    names = {f.role: f.name for f in spec.files}
    arrays = []
    for subset in ("train", "test"):
        images = parse_idx(contents[f"{subset}_images"], names[f"{subset}_images"])
        labels = parse_idx(contents[f"{subset}_labels"], names[f"{subset}_labels"])
        height, width, channels = spec.image_shape
        if images.dtype != np.uint8 or images.shape[1:] != (height, width):
            raise RawDataCorruptError(
                f"{names[f'{subset}_images']}: expected uint8 images of shape (N, {height}, "
                f"{width}), found {images.dtype} {images.shape}."
            )
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise RawDataCorruptError(
                f"{names[f'{subset}_labels']}: expected {images.shape[0]} labels (one per "
                f"image of {names[f'{subset}_images']}), found shape {labels.shape}."
            )
        labels = labels.astype(np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
            raise RawDataCorruptError(
                f"{names[f'{subset}_labels']}: labels must lie in [0, {spec.num_classes}), "
                f"found [{labels.min()}, {labels.max()}]."
            )
        arrays += [images.reshape(images.shape[0], height, width, channels), labels]
    return arrays[0], arrays[1], arrays[2], arrays[3]


def _mnist_file(name: str, role: str, sha256: str, md5: str, num_bytes: int, gz_md5: str) -> RawFileSpec:
    return RawFileSpec(
        name=name,
        role=role,
        sha256=sha256,
        md5=md5,
        num_bytes=num_bytes,
        download_name=f"{name}.gz",
        download_md5=gz_md5,
    )


# Mirrors and .gz md5s as in torchvision.datasets.MNIST (mirrors, resources); decompressed
# checksums from ../shared/datasets/mnist/README.md.
MNIST = RawSourceSpec(
    name="mnist",
    files=(
        _mnist_file(
            "train-images-idx3-ubyte",
            "train_images",
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "6bbc9ace898e44ae57da46a324031adb",
            47040016,
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        ),
        _mnist_file(
            "train-labels-idx1-ubyte",
            "train_labels",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "a25bea736e30d166cdddb491f175f624",
            60008,
            "d53e105ee54ea40749a09fcbcd1e9432",
        ),
        _mnist_file(
            "t10k-images-idx3-ubyte",
            "test_images",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "2646ac647ad5339dbf082846283269ea",
            7840016,
            "9fb629c4189551a2d022fa330f9573f3",
        ),
        _mnist_file(
            "t10k-labels-idx1-ubyte",
            "test_labels",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            "27ae3e4e09519cfbb04c329615203637",
            10008,
            "ec29112dd5afa0611ce80d1b7f02629c",
        ),
    ),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    image_shape=(28, 28, 1),
    num_classes=10,
    parse=_parse_mnist,
    reference="LeCun, Cortes, Burges: The MNIST database of handwritten digits (idx format).",
)


# --- CIFAR-10 python batches (Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html) ----

try:  # numpy >= 2 moved numpy.core to numpy._core; the official files name numpy.core
    from numpy._core.multiarray import _reconstruct as _numpy_reconstruct
except ImportError:  # pragma: no cover -- numpy 1.x
    from numpy.core.multiarray import _reconstruct as _numpy_reconstruct

# Every global a pickled uint8 ndarray refers to (Python 2 cPickle, protocol 2, as in the
# official batches), in both spellings of numpy's core module; nothing else is resolved.
_BATCH_PICKLE_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`_BATCH_PICKLE_GLOBALS`.

    A pickle can name any importable callable and have it called while loading
    (``os.system`` ...); here every other global is refused before it is imported.
    Strings of the Python 2 files are kept as bytes (``encoding="bytes"``), so the
    batch keys are ``b"data"``, ``b"labels"``.
    """

    def __init__(self, stream: io.BytesIO, name: str) -> None:
        super().__init__(stream, encoding="bytes")
        self._name = name

    def find_class(self, module: str, name: str) -> object:
        try:
            return _BATCH_PICKLE_GLOBALS[(module, name)]
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in _BATCH_PICKLE_GLOBALS)
            raise RawDataCorruptError(
                f"{self._name}: refused to unpickle the global {module}.{name}; a CIFAR-10 "
                f"python batch may only refer to {allowed}. The file is not an official batch "
                f"(nothing it names was imported or run)."
            ) from None

    def persistent_load(self, pid: object) -> object:
        raise RawDataCorruptError(f"{self._name}: refused a persistent id in the pickle ({pid!r}).")


def parse_cifar_batch(
    data: bytes | bytearray,
    name: str = "<batch>",
    image_shape: tuple[int, int, int] = (32, 32, 3),
    num_classes: int = 10,
    num_images: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Parse one CIFAR-10 python batch file into NHWC images and labels, without running pickle code.

    Format (Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html, "python version"):
    a Python 2 cPickle (protocol 2) of a dict with ``b"data"``, a uint8 array (N, 3072) whose
    row holds one image channel-first, row-major: 1024 red, then 1024 green, then 1024 blue
    values of the 32 x 32 image; ``b"labels"``, a list of N ints in 0..9; and
    ``b"batch_label"``, ``b"filenames"`` (ignored). Value ``(c, h, w)`` of a row, at index
    ``c * 1024 + h * 32 + w``, becomes ``images[n, h, w, c]``.

    Args:
        data: the file content.
        name: file name used in error messages.
        image_shape: (H, W, C) of one image; a row has H * W * C values.
        num_classes: labels must lie in [0, num_classes).
        num_images: number of rows the file must hold (10,000 for the official batches),
            or None to accept any.

    Returns:
        ``(images, labels)``: uint8 (N, H, W, C) C-contiguous and int64 (N,).

    Raises:
        RawDataCorruptError: not a complete pickle (e.g. truncated), bytes after its end,
            a global other than numpy's ``_reconstruct``/``ndarray``/``dtype`` (refused
            before anything is imported), missing keys, ``b"data"`` not uint8 of N rows
            of H * W * C values, labels not N integers in [0, num_classes).
    """
    stream = io.BytesIO(data)
    try:
        batch = _BatchUnpickler(stream, name).load()
    except RawDataCorruptError:
        raise
    except Exception as exc:  # noqa: BLE001 -- any failure of a foreign file reads the same
        raise RawDataCorruptError(
            f"{name}: not a readable CIFAR-10 python batch (truncated or not a pickle?): "
            f"{type(exc).__name__}: {exc}."
        ) from exc
    if stream.tell() != len(data):
        raise RawDataCorruptError(
            f"{name}: {len(data) - stream.tell()} bytes follow the end of the pickled batch."
        )
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        found = sorted(map(repr, batch)) if isinstance(batch, dict) else type(batch).__name__
        raise RawDataCorruptError(
            f"{name}: expected a dict with keys b'data' and b'labels' (CIFAR-10 python "
            f"batch), found {found}."
        )
    height, width, channels = image_shape
    row_length = height * width * channels
    rows = batch[b"data"]
    if (
        not isinstance(rows, np.ndarray)
        or rows.dtype != np.uint8
        or rows.ndim != 2
        or rows.shape[1] != row_length
    ):
        found = f"{rows.dtype} {rows.shape}" if isinstance(rows, np.ndarray) else type(rows).__name__
        raise RawDataCorruptError(
            f"{name}: b'data' must be a uint8 array (N, {row_length}) of {channels} x {height} "
            f"x {width} images, found {found}."
        )
    if num_images is not None and rows.shape[0] != num_images:
        raise RawDataCorruptError(f"{name}: expected {num_images} images, found {rows.shape[0]}.")
    labels = batch[b"labels"]
    labels = np.asarray(labels) if isinstance(labels, (list, np.ndarray)) else None
    if labels is None or labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise RawDataCorruptError(f"{name}: b'labels' must be a list of integers.")
    if labels.shape[0] != rows.shape[0]:
        raise RawDataCorruptError(
            f"{name}: expected {rows.shape[0]} labels (one per image), found {labels.shape[0]}."
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise RawDataCorruptError(
            f"{name}: labels must lie in [0, {num_classes}), found [{labels.min()}, {labels.max()}]."
        )
    images = rows.reshape(-1, channels, height, width).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def _parse_cifar(
    spec: RawSourceSpec, contents: Mapping[str, bytes | bytearray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse the batches (roles ``train_*`` then ``test_*``, in spec order) into NHWC arrays."""
    arrays = []
    for subset in ("train", "test"):
        batches = [
            parse_cifar_batch(
                contents[f.role], f.name, spec.image_shape, spec.num_classes, f.num_images
            )
            for f in spec.files
            if f.role.startswith(subset)
        ]
        arrays += [np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])]
    return arrays[0], arrays[1], arrays[2], arrays[3]


def _cifar_file(name: str, role: str, md5: str, num_bytes: int) -> RawFileSpec:
    return RawFileSpec(name=name, role=role, sha256="", md5=md5, num_bytes=num_bytes, num_images=10000)


# Archive, url and md5s as in torchvision.datasets.CIFAR10 (url, tgz_md5, train_list,
# test_list); sizes of the archive and of the extracted batches as listed by their users.
CIFAR10 = RawSourceSpec(
    name="cifar10",
    files=(
        _cifar_file("data_batch_1", "train_batch_1", "c99cafc152244af753f735de768cd75f", 31035704),
        _cifar_file("data_batch_2", "train_batch_2", "d4bba439e000b95fd0a9bffe97cbabec", 31035320),
        _cifar_file("data_batch_3", "train_batch_3", "54ebc095f3ab1f0389bbae665268c751", 31035999),
        _cifar_file("data_batch_4", "train_batch_4", "634d18415352ddfa80567beed471001a", 31035696),
        _cifar_file("data_batch_5", "train_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb", 31035623),
        _cifar_file("test_batch", "test_batch", "40351d587109b95175f43aff81a1287e", 31035526),
    ),
    mirrors=("https://www.cs.toronto.edu/~kriz/",),
    image_shape=(32, 32, 3),
    num_classes=10,
    parse=_parse_cifar,
    reference=(
        "Krizhevsky: Learning Multiple Layers of Features from Tiny Images (2009); python "
        "batches as described on https://www.cs.toronto.edu/~kriz/cifar.html."
    ),
    archive=RawArchiveSpec(
        name="cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        num_bytes=170498071,
        folder="cifar-10-batches-py",
    ),
)

#: Known raw sources by name. An unknown name given to :func:`load_raw_images` fails
#: with this list.
RAW_SOURCES: dict[str, RawSourceSpec] = {MNIST.name: MNIST, CIFAR10.name: CIFAR10}


# --- locating, downloading, verifying ----------------------------------------------------------


def _get_spec(source: str) -> RawSourceSpec:
    return lookup(RAW_SOURCES, source, "source")


def _files_folder(spec: RawSourceSpec, root: Path) -> Path:
    """Folder holding the spec's files: ``root``, or ``root/<archive folder>``."""
    return root if spec.archive is None else root / spec.archive.folder


def _find(root: Path, file: RawFileSpec) -> Path | None:
    """The local copy of ``file`` in ``root``: uncompressed name first, then ``.gz``."""
    candidates = [root / file.name, root / f"{file.name}.gz"]
    if file.download_name:
        candidates.append(root / file.download_name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def missing_raw_files(source: str, root: str | Path) -> list[str]:
    """Official files of ``source`` that are in ``root`` neither as ``<name>`` nor ``<name>.gz``.

    For a source that comes as an archive (CIFAR-10) the files are looked up in
    ``root/<archive folder>``, and none counts as missing while the archive itself is in
    ``root`` (it is extracted on load).

    Args:
        source: key of :data:`RAW_SOURCES`.
        root: folder holding the raw files.

    Returns:
        Decompressed file names that are missing, in the spec's order (empty if all present).
        Presence only; content is verified by :func:`load_raw_images`.

    Raises:
        ValueError: unknown ``source``.
    """
    spec = _get_spec(source)
    root = Path(root).expanduser()
    folder = _files_folder(spec, root)
    missing = [f.name for f in spec.files if _find(folder, f) is None]
    if missing and spec.archive is not None and (root / spec.archive.name).is_file():
        return []
    return missing


def _read_verified(path: Path, file: RawFileSpec, shown: str | None = None) -> tuple[bytearray, str]:
    """Read (and gunzip if ``.gz``) ``path``, hashing the decompressed bytes as they stream.

    Returns the decompressed bytes and their sha256. Raises RawDataCorruptError if the file
    cannot be read or decompressed, RawDataChecksumError if the sha256 (or, where the spec
    publishes none, the md5) differs from the spec. ``shown`` replaces ``path`` in messages.
    """
    shown = shown or str(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    digest = hashlib.sha256()
    md5 = None if file.sha256 else hashlib.md5(usedforsecurity=False)
    content = bytearray()
    try:
        with opener(path, "rb") as stream:
            while chunk := stream.read(_CHUNK_BYTES):
                digest.update(chunk)
                if md5 is not None:
                    md5.update(chunk)
                content += chunk
    except (EOFError, OSError, zlib.error) as exc:
        kind = "decompressed (truncated or corrupt gzip?)" if opener is gzip.open else "read"
        raise RawDataCorruptError(
            f"Raw file {shown} could not be {kind}: {type(exc).__name__}: {exc}. "
            f"Delete it and load again to re-download it, or replace it with a good copy."
        ) from exc
    found = digest.hexdigest()
    algorithm, expected, seen = ("sha256", file.sha256, found) if md5 is None else (
        "md5", file.md5, md5.hexdigest()
    )
    if seen != expected:
        raise RawDataChecksumError(
            f"Raw file {shown} does not have the published content of {file.name}: "
            f"{algorithm} of its decompressed bytes is {seen} ({len(content)} bytes), "
            f"expected {expected} ({file.num_bytes} bytes). "
            f"Delete it and load again to re-download it, or replace it with a good copy."
        )
    return content, found


def _verify_archive(path: Path, archive: RawArchiveSpec) -> None:
    """Check the md5 of ``path`` as it is (not decompressed) against the published one.

    Raises RawDataCorruptError if it cannot be read, RawDataChecksumError on a mismatch.
    """
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(_CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise RawDataCorruptError(
            f"Raw archive {path} could not be read: {type(exc).__name__}: {exc}."
        ) from exc
    if digest.hexdigest() != archive.md5:
        raise RawDataChecksumError(
            f"Raw archive {path} does not have the published content of {archive.name}: "
            f"md5 of its bytes is {digest.hexdigest()} ({size} bytes), expected {archive.md5} "
            f"({archive.num_bytes} bytes). "
            f"Delete it and load again to re-download it, or replace it with a good copy."
        )


def _download_url(url: str, folder: Path, filename: str, md5: str | None = None) -> None:
    """Download ``url`` to ``folder/filename`` with torchvision (imported only here).

    With ``md5``, torchvision also checks the download against it.
    """
    from torchvision.datasets.utils import download_url

    if md5 is None:
        download_url(url, str(folder), filename=filename)
    else:
        download_url(url, str(folder), filename=filename, md5=md5)


def _download_verified(
    spec: RawSourceSpec,
    download_name: str,
    root: Path,
    verify: Callable[[Path], object],
    present: Callable[[], Path | None],
    md5: str | None = None,
) -> tuple[Path | None, list[str]]:
    """Try each mirror for ``download_name``; it lands in ``root`` only once ``verify`` passes.

    Each attempt writes into a private temporary folder inside ``root`` (removed afterwards),
    so a failed or corrupt download never leaves a file under an official name; a file that
    ``present()`` finds meanwhile is never overwritten. Returns the final path (or None) and
    one line per failed attempt.
    """
    failures = []
    target = root / download_name
    for mirror in spec.mirrors:
        url = f"{mirror}{download_name}"
        staging = Path(tempfile.mkdtemp(prefix=f".download-{download_name}-", dir=root))
        try:
            if md5 is None:
                _download_url(url, staging, download_name)
            else:
                _download_url(url, staging, download_name, md5=md5)
            verify(staging / download_name)
            if (existing := present()) is not None:
                return existing, failures
            (staging / download_name).replace(target)
            return target, failures
        except Exception as exc:  # noqa: BLE001 -- any failure means: try the next mirror
            failures.append(f"{url}: {type(exc).__name__}: {exc}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return None, failures


def _download(spec: RawSourceSpec, file: RawFileSpec, root: Path) -> tuple[Path | None, list[str]]:
    """Download one official file into ``root``, verified; see :func:`_download_verified`."""
    return _download_verified(
        spec,
        file.download_name,
        root,
        lambda path: _read_verified(path, file),
        lambda: _find(root, file),
    )


def _extract_archive(spec: RawSourceSpec, path: Path, root: Path) -> None:
    """Extract ``spec.archive`` (already md5-checked) at ``path`` into ``root/<folder>``.

    The archive is unpacked with tarfile's ``"data"`` filter (no absolute paths, no links
    or files outside the target, no devices) into a temporary folder inside ``root``; the
    spec's files are verified there, then the folder is renamed into place in one step (or,
    if ``root/<folder>`` exists already, only its missing files are moved in). A crash
    leaves at most a hidden ``.extract-*`` folder, never a partly written official file.
    """
    archive = spec.archive
    assert archive is not None
    if not hasattr(tarfile, "data_filter"):
        raise RawDataError(
            f"Extracting {path} safely needs tarfile's extraction filters (Python >= 3.10.12 "
            f"or >= 3.11.4), this is Python {platform.python_version()}. Extract it yourself "
            f"into {root} (it creates {archive.folder}/)."
        )
    staging = Path(tempfile.mkdtemp(prefix=f".extract-{archive.name}-", dir=root))
    try:
        try:
            with tarfile.open(path, "r:*") as tar:
                tar.extractall(staging, filter="data")
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise RawDataCorruptError(
                f"Raw archive {path} could not be extracted: {type(exc).__name__}: {exc}. "
                f"Delete it and load again to re-download it, or replace it with a good copy."
            ) from exc
        extracted = staging / archive.folder
        for file in spec.files:
            member = _find(extracted, file)
            if member is None:
                raise RawDataCorruptError(
                    f"Raw archive {path} has no member {archive.folder}/{file.name}. "
                    f"Delete it and load again to re-download it, or replace it with a good copy."
                )
            _read_verified(member, file, shown=f"{archive.folder}/{member.name} in {path}")
        target = root / archive.folder
        if not target.exists():
            try:
                extracted.rename(target)
                return
            except OSError:
                if not target.is_dir():  # not a folder created meanwhile by another loader
                    raise
        for file in spec.files:
            if _find(target, file) is None:
                member = _find(extracted, file)
                assert member is not None
                member.replace(target / member.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _unpack_archive(spec: RawSourceSpec, root: Path, download: bool) -> list[str]:
    """Extract the source's archive from ``root``, downloading it first if absent and allowed.

    Returns one line per failed download attempt (empty if none was needed or one worked).
    Raises RawDataChecksumError / RawDataCorruptError for a local archive that is not the
    published one or cannot be extracted; it is left as it is.
    """
    archive = spec.archive
    assert archive is not None
    path = root / archive.name
    failures: list[str] = []
    if not path.is_file():
        if not download:
            return failures
        root.mkdir(parents=True, exist_ok=True)
        downloaded, failures = _download_verified(
            spec,
            archive.name,
            root,
            lambda staged: _verify_archive(staged, archive),
            lambda: path if path.is_file() else None,
            md5=archive.md5,
        )
        if downloaded is None:
            return failures
    _verify_archive(path, archive)
    _extract_archive(spec, path, root)
    return failures


def _missing_listing(spec: RawSourceSpec, missing: list[RawFileSpec]) -> str:
    if spec.archive is None:
        return "\n".join(f"  - {f.name}.gz (or {f.name})" for f in missing)
    return "\n".join(f"  - {spec.archive.folder}/{f.name}" for f in missing) + (
        f"\n  (or the archive {spec.archive.name} that holds them, extracted on load)"
    )


def load_raw_images(source: str, root: str | Path, download: bool = True) -> RawImageData:
    """Load the official train and test sets of ``source`` from ``root``, verifying checksums.

    Each official file is looked up in ``root`` as ``<name>`` or ``<name>.gz``. A missing
    file is downloaded (``download=True``) from the spec's mirrors in turn with
    ``torchvision.datasets.utils.download_url`` and kept in ``root`` as it was served;
    downloads go to a temporary name first and are renamed only once verified. Existing
    files in ``root`` are never modified or deleted.

    A source that comes as an archive (CIFAR-10: ``cifar-10-python.tar.gz``) has its files
    in ``root/<archive folder>`` (``cifar-10-batches-py/``, the layout torchvision uses).
    Where any is missing, the archive in ``root`` (downloaded first with its md5 if absent
    and ``download=True``) is md5-checked and extracted safely (:func:`_extract_archive`);
    files already there are kept.

    Every file's DECOMPRESSED content must have the spec's sha256, or its md5 where only
    that is published (so a re-compressed ``.gz`` is accepted). For MNIST the result is
    train (60000, 28, 28, 1) and test (10000, 28, 28, 1) uint8 images, pixel values 0..255,
    and int64 labels 0..9 (LeCun et al., idx format); for CIFAR-10 train (50000, 32, 32, 3)
    and test (10000, 32, 32, 3) uint8 RGB images and int64 labels 0..9 (Krizhevsky 2009,
    python batches parsed by :func:`parse_cifar_batch`, which never runs pickle code).

    Args:
        source: key of :data:`RAW_SOURCES`, e.g. ``"mnist"`` or ``"cifar10"``.
        root: folder holding (or receiving) the raw files, e.g. ``data/01_raw/mnist``.
        download: whether missing files may be downloaded.

    Returns:
        :class:`RawImageData` with the verified sha256 of every file.

    Raises:
        ValueError: unknown ``source`` (the message lists the known ones).
        RawDataNotFoundError: files missing and not downloadable; the message lists them,
            the folder to put them in and the catalog entry to change.
        RawDataChecksumError: a file's decompressed sha256 (md5) differs from the published
            one, or the archive's md5 does.
        RawDataCorruptError: a file cannot be read, decompressed (truncated gzip), extracted
            or parsed (including a pickle that names a global other than numpy's array ones).
    """
    spec = _get_spec(source)
    root = Path(root).expanduser()
    folder = _files_folder(spec, root)
    found: dict[str, Path] = {}
    failures: list[str] = []
    if spec.archive is not None and any(_find(folder, f) is None for f in spec.files):
        failures += _unpack_archive(spec, root, download)
    for file in spec.files:
        path = _find(folder, file)
        if path is None and download and spec.archive is None:
            root.mkdir(parents=True, exist_ok=True)
            path, file_failures = _download(spec, file, root)
            failures += file_failures
        if path is not None:
            found[file.name] = path
    missing = [f for f in spec.files if f.name not in found]
    if missing:
        listing = _missing_listing(spec, missing)
        if not download:
            how = "Downloading is switched off (download=False)."
        elif failures:
            how = "Downloading them failed:\n" + "\n".join(f"  * {line}" for line in failures)
        else:
            how = f"No download mirror is known for {spec.name!r}."
        raise RawDataNotFoundError(
            f"Raw {spec.name} files missing from {root.resolve()}:\n{listing}\n{how}\n"
            f"Put the official files in {root.resolve()}, or point the catalog entry "
            f"`raw_images` elsewhere: its `root` (folder with the files) and `download` "
            f"arguments can be overridden in conf/local/catalog.yml."
        )
    contents: dict[str, bytearray] = {}
    checksums: dict[str, str] = {}
    for file in spec.files:
        contents[file.role], checksums[file.name] = _read_verified(found[file.name], file)
    train_images, train_labels, test_images, test_labels = spec.parse(spec, contents)
    return RawImageData(
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        source=spec.name,
        checksums=checksums,
        num_classes=spec.num_classes,
    )
