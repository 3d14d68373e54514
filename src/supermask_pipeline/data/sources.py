"""Raw image sources: where the official files come from, how they are verified and parsed.

A source is one row of :data:`RAW_SOURCES`, a :class:`RawSourceSpec` naming the
official files, the mirrors they are downloaded from, their published checksums
and the function that turns their bytes into arrays. Adding a source (CIFAR-10:
one ``cifar-10-python.tar.gz`` archive of python-pickle batches) is one more
spec and one parse function; :func:`load_raw_images` stays as it is.

Checksums are always taken over the DECOMPRESSED bytes, so a file re-compressed
with another gzip (as in ``../shared/datasets/mnist``) is accepted, while any
change to its content is not.

This module imports no Kedro; torchvision is imported only when a download is
attempted.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import tempfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from supermask_pipeline.registry import lookup

__all__ = [
    "RAW_SOURCES",
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
    "parse_idx",
]

_CHUNK_BYTES = 1 << 20


class RawDataError(Exception):
    """Base class of every error raised while locating, verifying or parsing raw files."""


class RawDataNotFoundError(RawDataError):
    """Raw files are neither in the root folder nor could be downloaded."""


class RawDataChecksumError(RawDataError):
    """A raw file's decompressed content does not have the published checksum."""


class RawDataCorruptError(RawDataError):
    """A raw file cannot be read, decompressed (e.g. truncated gzip) or parsed."""


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
            decompressed bytes, e.g. ``{"train-images-idx3-ubyte": "ba89..."}``.
        num_classes: number of classes (10 for MNIST).
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
            It is looked up in the root folder as ``<name>.gz`` or ``<name>``.
        role: what the parse function uses it for, e.g. ``"train_images"``.
        sha256: sha256 hex digest of the decompressed bytes (verified on every load).
        md5: md5 hex digest of the decompressed bytes (recorded, for cross-checks
            with other tools' listings).
        num_bytes: size of the decompressed file in bytes (reported in errors).
        download_name: file name on the mirrors, e.g. ``"train-images-idx3-ubyte.gz"``.
        download_md5: md5 of ``download_name`` as served by the mirrors (the value
            torchvision's download checks); not used to accept a local file,
            because a re-compressed file has other bytes and the same content.
    """

    name: str
    role: str
    sha256: str
    md5: str
    num_bytes: int
    download_name: str
    download_md5: str


@dataclass(frozen=True)
class RawSourceSpec:
    """Description of a raw image source: files, mirrors, checksums, shape and parser.

    Attributes:
        name: key in :data:`RAW_SOURCES`.
        files: the official files, see :class:`RawFileSpec`.
        mirrors: base URLs tried in turn; a file's URL is ``mirror + download_name``.
        image_shape: (H, W, C) of one image.
        num_classes: number of classes.
        parse: ``parse(spec, contents)`` with ``contents`` mapping each file's
            ``role`` to its decompressed bytes; returns ``(train_images,
            train_labels, test_images, test_labels)`` as uint8 (N, H, W, C) and
            int64 (N,) arrays. Raises :class:`RawDataCorruptError` on bad content.
        reference: where the format and checksums are published.
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

#: Known raw sources by name. An unknown name given to :func:`load_raw_images` fails
#: with this list.
RAW_SOURCES: dict[str, RawSourceSpec] = {MNIST.name: MNIST}


# --- locating, downloading, verifying ----------------------------------------------------------


def _get_spec(source: str) -> RawSourceSpec:
    return lookup(RAW_SOURCES, source, "source")


def _find(root: Path, file: RawFileSpec) -> Path | None:
    """The local copy of ``file`` in ``root``: uncompressed name first, then ``.gz``."""
    for candidate in (root / file.name, root / f"{file.name}.gz", root / file.download_name):
        if candidate.is_file():
            return candidate
    return None


def missing_raw_files(source: str, root: str | Path) -> list[str]:
    """Official files of ``source`` that are in ``root`` neither as ``<name>`` nor ``<name>.gz``.

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
    return [f.name for f in spec.files if _find(root, f) is None]


def _read_verified(path: Path, file: RawFileSpec) -> tuple[bytearray, str]:
    """Read (and gunzip if ``.gz``) ``path``, hashing the decompressed bytes as they stream.

    Returns the decompressed bytes and their sha256. Raises RawDataCorruptError if the file
    cannot be read or decompressed, RawDataChecksumError if the sha256 differs from the spec.
    """
    opener = gzip.open if path.name.endswith(".gz") else open
    digest = hashlib.sha256()
    content = bytearray()
    try:
        with opener(path, "rb") as stream:
            while chunk := stream.read(_CHUNK_BYTES):
                digest.update(chunk)
                content += chunk
    except (EOFError, OSError, zlib.error) as exc:
        kind = "decompressed (truncated or corrupt gzip?)" if opener is gzip.open else "read"
        raise RawDataCorruptError(
            f"Raw file {path} could not be {kind}: {type(exc).__name__}: {exc}. "
            f"Delete it and load again to re-download it, or replace it with a good copy."
        ) from exc
    found = digest.hexdigest()
    if found != file.sha256:
        raise RawDataChecksumError(
            f"Raw file {path} does not have the published content of {file.name}: "
            f"sha256 of its decompressed bytes is {found} ({len(content)} bytes), "
            f"expected {file.sha256} ({file.num_bytes} bytes). "
            f"Delete it and load again to re-download it, or replace it with a good copy."
        )
    return content, found


def _download_url(url: str, folder: Path, filename: str) -> None:
    """Download ``url`` to ``folder/filename`` with torchvision (imported only here)."""
    from torchvision.datasets.utils import download_url

    download_url(url, str(folder), filename=filename)


def _download(spec: RawSourceSpec, file: RawFileSpec, root: Path) -> tuple[Path | None, list[str]]:
    """Try each mirror; a download lands in ``root`` only once its content is verified.

    Each attempt writes into a private temporary folder inside ``root`` (removed afterwards),
    so a failed or corrupt download never leaves a file under an official name.
    Returns the final path (or None) and one line per failed attempt.
    """
    failures = []
    target = root / file.download_name
    for mirror in spec.mirrors:
        url = f"{mirror}{file.download_name}"
        staging = Path(tempfile.mkdtemp(prefix=f".download-{file.name}-", dir=root))
        try:
            _download_url(url, staging, file.download_name)
            _read_verified(staging / file.download_name, file)
            if _find(root, file) is not None:  # appeared meanwhile: never overwrite
                return _find(root, file), failures
            (staging / file.download_name).replace(target)
            return target, failures
        except Exception as exc:  # noqa: BLE001 -- any failure means: try the next mirror
            failures.append(f"{url}: {type(exc).__name__}: {exc}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return None, failures


def load_raw_images(source: str, root: str | Path, download: bool = True) -> RawImageData:
    """Load the official train and test sets of ``source`` from ``root``, verifying checksums.

    Each official file is looked up in ``root`` as ``<name>`` or ``<name>.gz``. A missing
    file is downloaded (``download=True``) from the spec's mirrors in turn with
    ``torchvision.datasets.utils.download_url`` and kept in ``root`` as it was served;
    downloads go to a temporary name first and are renamed only once verified. Existing
    files in ``root`` are never modified or deleted.

    Every file's DECOMPRESSED content must have the spec's sha256 (so a re-compressed
    ``.gz`` is accepted). For MNIST the result is train (60000, 28, 28, 1) and test
    (10000, 28, 28, 1) uint8 images, pixel values 0..255, and int64 labels 0..9
    (LeCun et al., idx format).

    Args:
        source: key of :data:`RAW_SOURCES`, e.g. ``"mnist"``.
        root: folder holding (or receiving) the raw files, e.g. ``data/01_raw/mnist``.
        download: whether missing files may be downloaded.

    Returns:
        :class:`RawImageData` with the verified sha256 of every file.

    Raises:
        ValueError: unknown ``source`` (the message lists the known ones).
        RawDataNotFoundError: files missing and not downloadable; the message lists them,
            the folder to put them in and the catalog entry to change.
        RawDataChecksumError: a file's decompressed sha256 differs from the published one.
        RawDataCorruptError: a file cannot be read, decompressed (truncated gzip) or parsed.
    """
    spec = _get_spec(source)
    root = Path(root).expanduser()
    found: dict[str, Path] = {}
    failures: list[str] = []
    for file in spec.files:
        path = _find(root, file)
        if path is None and download:
            root.mkdir(parents=True, exist_ok=True)
            path, file_failures = _download(spec, file, root)
            failures += file_failures
        if path is not None:
            found[file.name] = path
    missing = [f for f in spec.files if f.name not in found]
    if missing:
        listing = "\n".join(f"  - {f.name}.gz (or {f.name})" for f in missing)
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
