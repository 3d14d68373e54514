"""Raw image sources: load a source's official train and test sets, verified, from a folder.

:func:`load_raw_images` puts the pieces together: it looks up the source in
:data:`~supermask_pipeline.images.specs.RAW_SOURCES`, finds its files in the root folder
(or extracts them from the source's archive, :mod:`~supermask_pipeline.images.archive`),
downloads missing ones (:mod:`~supermask_pipeline.images.download`), verifies the
published checksum of every file's decompressed content and parses them with the
source's parser (:mod:`~supermask_pipeline.images.idx` for MNIST,
:mod:`~supermask_pipeline.images.cifar` for CIFAR-10, which never runs pickle code).
:func:`missing_raw_files` tells which files are absent without reading any.

This module imports no Kedro; torchvision is imported only when a download is
attempted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from supermask_pipeline.images.archive import unpack_archive
from supermask_pipeline.images.download import download_raw_file, find_raw_file, read_verified
from supermask_pipeline.images.errors import RawDataNotFoundError
from supermask_pipeline.images.specs import RAW_SOURCES, RawFileSpec, RawSourceSpec
from supermask_pipeline.registry import lookup

__all__ = [
    "RawImageData",
    "load_raw_images",
    "missing_raw_files",
]


@dataclass(frozen=True, eq=False)
class RawImageData:
    """The official train and test sets of one source, verified against published checksums.

    Attributes:
        train_images: uint8 array (N_train, H, W, C), pixel values 0..255.
        train_labels: int64 array (N_train,), class indices in [0, num_classes).
        test_images: uint8 array (N_test, H, W, C).
        test_labels: int64 array (N_test,).
        source: key of the source in :data:`~supermask_pipeline.images.specs.RAW_SOURCES`,
            e.g. ``"mnist"``.
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


def _get_spec(source: str) -> RawSourceSpec:
    return lookup(RAW_SOURCES, source, "source")


def _files_folder(spec: RawSourceSpec, root: Path) -> Path:
    """Folder holding the spec's files: ``root``, or ``root/<archive folder>``."""
    return root if spec.archive is None else root / spec.archive.folder


def missing_raw_files(source: str, root: str | Path) -> list[str]:
    """Official files of ``source`` that are in ``root`` neither as ``<name>`` nor ``<name>.gz``.

    For a source that comes as an archive (CIFAR-10) the files are looked up in
    ``root/<archive folder>``, and none counts as missing while the archive itself is in
    ``root`` (it is extracted on load).

    Args:
        source: key of :data:`~supermask_pipeline.images.specs.RAW_SOURCES`.
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
    missing = [f.name for f in spec.files if find_raw_file(folder, f) is None]
    if missing and spec.archive is not None and (root / spec.archive.name).is_file():
        return []
    return missing


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
    and ``download=True``) is md5-checked and extracted safely
    (:func:`~supermask_pipeline.images.archive.unpack_archive`); files already there are kept.

    Every file's DECOMPRESSED content must have the spec's sha256, or its md5 where only
    that is published (so a re-compressed ``.gz`` is accepted). For MNIST the result is
    train (60000, 28, 28, 1) and test (10000, 28, 28, 1) uint8 images, pixel values 0..255,
    and int64 labels 0..9 (LeCun et al., idx format); for CIFAR-10 train (50000, 32, 32, 3)
    and test (10000, 32, 32, 3) uint8 RGB images and int64 labels 0..9 (Krizhevsky 2009,
    python batches parsed by
    :func:`~supermask_pipeline.images.cifar.parse_cifar_batch`, which never runs pickle code).

    Args:
        source: key of :data:`~supermask_pipeline.images.specs.RAW_SOURCES`, e.g. ``"mnist"``
            or ``"cifar10"``.
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
    if spec.archive is not None and any(find_raw_file(folder, f) is None for f in spec.files):
        failures += unpack_archive(spec, root, download)
    for file in spec.files:
        path = find_raw_file(folder, file)
        if path is None and download and spec.archive is None:
            root.mkdir(parents=True, exist_ok=True)
            path, file_failures = download_raw_file(spec, file, root)
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
        contents[file.role], checksums[file.name] = read_verified(found[file.name], file)
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
