"""Raw image sources: load a source's official train and test sets, verified, from a folder.

:func:`load_raw_images` puts the pieces together: it looks up the source in
:data:`~supermask_pipeline.images.specs.RAW_SOURCES`, finds its files in the root folder
(or extracts them from the source's archive, :mod:`~supermask_pipeline.images.archive`),
downloads missing ones (:mod:`~supermask_pipeline.images.download`), verifies the
published checksum of every file's decompressed content and parses them with the
source's parser (:mod:`~supermask_pipeline.images.formats`: idx, CIFAR python batches, which
never runs pickle code, npz and HDF5). A file without a published checksum is trusted on
first use: its sha256 is recorded in ``<root>/checksums.json`` and verified from then on.
:func:`missing_raw_files` tells which files are absent without reading any;
:func:`check_raw_available` raises the short error a hook shows before the first node runs.

This module imports no Kedro; torchvision is imported only when a download is
attempted.
"""

from __future__ import annotations

import datetime
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from supermask_pipeline.atomic_write import atomic_write_bytes
from supermask_pipeline.images.archive import unpack_archive
from supermask_pipeline.images.download import download_raw_file, find_raw_file, read_verified
from supermask_pipeline.images.errors import RawDataCorruptError, RawDataNotFoundError
from supermask_pipeline.images.formats import describe_content
from supermask_pipeline.images.specs import RAW_SOURCES, RawFileSpec, RawSourceSpec
from supermask_pipeline.registry import lookup

__all__ = [
    "CHECKSUMS_FILE",
    "RawImageData",
    "check_raw_available",
    "load_raw_images",
    "missing_raw_files",
]

logger = logging.getLogger(__name__)

#: Name of the file, in a dataset's raw folder, holding the checksums recorded on first use.
CHECKSUMS_FILE = "checksums.json"


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
        root: the folder the files were read from (absolute), ``""`` if unknown.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str
    checksums: dict[str, str]
    num_classes: int
    root: str = ""


def _get_spec(source: str | RawSourceSpec) -> RawSourceSpec:
    if isinstance(source, RawSourceSpec):
        return source
    return lookup(RAW_SOURCES, source, "source",
                  "Add a dataset entry to conf/base/datasets.yml (README \"Your own dataset\").")


def _files_folder(spec: RawSourceSpec, root: Path) -> Path:
    """Folder holding the spec's files: ``root``, or ``root/<archive folder>``."""
    return root if spec.archive is None else root / spec.archive.folder


def missing_raw_files(source: str | RawSourceSpec, root: str | Path) -> list[str]:
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
        return "\n".join(f"  - {f.name}.gz (or {f.name})" if spec.format == "idx" else f"  - {f.name}"
                         for f in missing)
    return "\n".join(f"  - {spec.archive.folder}/{f.name}" for f in missing) + (
        f"\n  (or the archive {spec.archive.name} that holds them, extracted on load)"
    )


def load_raw_images(source: str | RawSourceSpec, root: str | Path, download: bool = True) -> RawImageData:
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
    that is published (so a re-compressed ``.gz`` is accepted); where only the md5 of the
    file as served is published (KMNIST), a served ``.gz`` must have it. A file with no
    published checksum is trusted on first use: once all files parsed, their sha256 is
    recorded in ``root/checksums.json`` (written atomically, logged as "trust on first use")
    and every later load must match it. For MNIST the result is
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
        RawDataChecksumError: a file's checksum differs from the published (or recorded) one,
            or the archive's md5 does; the message says whether the file parses as the format
            (most likely another dataset: add it as its own entry) or not (a damaged copy).
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
        if not download:
            how = "Downloading is switched off (download=False)."
        elif failures:
            how = "Downloading them failed:\n" + "\n".join(f"  * {line}" for line in failures)
        else:
            how = f"No download mirror is known for {spec.name!r}."
        raise RawDataNotFoundError(_missing_message(spec, root, missing, how))
    recorded = _read_recorded(root)
    contents: dict[str, bytearray] = {}
    checksums: dict[str, str] = {}
    for file in spec.files:
        contents[file.role], checksums[file.name] = read_verified(
            found[file.name], file, recorded=recorded.get(file.name, {}).get("sha256"),
            diagnose=lambda content, file=file: describe_content(spec, file, content))
    train_images, train_labels, test_images, test_labels = spec.parse(spec, contents)
    first_use = [f for f in spec.files if not f.published and f.name not in recorded]
    if first_use:
        _record_first_use(spec, root, first_use, checksums, contents)
    return RawImageData(
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        source=spec.name,
        checksums=checksums,
        num_classes=spec.num_classes,
        root=str(root.resolve()),
    )


def _missing_message(spec: RawSourceSpec, root: Path, missing: list[RawFileSpec], how: str) -> str:
    return (
        f"Raw {spec.name} files missing from {root.resolve()}:\n{_missing_listing(spec, missing)}\n{how}\n"
        f"Put the files in {root.resolve()}, or point the catalog entry `raw_images` elsewhere: its "
        f"`root` (folder with the files) and `download` arguments can be overridden in conf/local/catalog.yml."
    )


def check_raw_available(source: str | RawSourceSpec, root: str | Path, download: bool = True) -> None:
    """Raise before anything runs if ``source``'s files are absent from ``root`` and cannot be downloaded.

    Presence only (no file is read, nothing is written): every file is in ``root`` (``<name>``
    or ``<name>.gz``; for an archive source, its files or the archive), or ``download`` is true
    and the dataset entry names mirrors to download it from.

    Args:
        source: a name of :data:`~supermask_pipeline.images.specs.RAW_SOURCES` or a spec.
        root: the raw folder (the catalog entry ``raw_images``'s ``root``).
        download: the catalog entry's ``download``.

    Raises:
        ValueError: unknown ``source`` (the message lists the configured datasets).
        RawDataNotFoundError: files missing and not downloadable; the message names the
            folder, the missing files and the fix.
    """
    spec = _get_spec(source)
    root = Path(root).expanduser()
    names = set(missing_raw_files(spec, root))
    if not names or (download and spec.mirrors):
        return
    how = ("Downloading is switched off (download=False)." if not download
           else f"The dataset entry {spec.name!r} names no mirrors to download them from.")
    raise RawDataNotFoundError(_missing_message(spec, root, [f for f in spec.files if f.name in names], how))


def _read_recorded(root: Path) -> dict[str, dict]:
    """The checksums recorded on first use in ``root/checksums.json`` (file name → {sha256, …})."""
    path = root / CHECKSUMS_FILE
    if not path.is_file():
        return {}
    try:
        files = json.loads(path.read_text())["files"]
        if not isinstance(files, dict):
            raise TypeError("'files' is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RawDataCorruptError(
            f"{path} (checksums recorded on first use) could not be read: {type(exc).__name__}: {exc}. "
            f"Move it away to record the files' checksums anew on the next load (only if you trust the files)."
        ) from exc
    return files


def _record_first_use(spec: RawSourceSpec, root: Path, files: list[RawFileSpec], checksums: dict[str, str],
                      contents: dict[str, bytearray]) -> None:
    """Add the files' sha256 to ``root/checksums.json`` (atomically) and log it as trust on first use."""
    path = root / CHECKSUMS_FILE
    recorded = _read_recorded(root)
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    for file in files:
        recorded[file.name] = {"sha256": checksums[file.name], "num_bytes": len(contents[file.role]),
                               "recorded_at": now}
    document = {
        "dataset": spec.name,
        "note": ("Trust on first use: no checksum of these files is published, so their sha256 (of the "
                 "decompressed bytes) was recorded the first time they were loaded and is verified on "
                 "every load since. Delete an entry only to accept a new version of that file."),
        "files": dict(sorted(recorded.items())),
    }
    atomic_write_bytes(path, (json.dumps(document, indent=2) + "\n").encode())
    logger.warning(
        "Dataset %r: no published checksum for %s; trust on first use: recorded their sha256 in %s, "
        "verified on every load from now on.", spec.name, ", ".join(f.name for f in files), path)

