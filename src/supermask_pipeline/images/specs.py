"""The known raw image sources: datasets as configuration entries, parsed into specs.

A source is one row of :data:`RAW_SOURCES`, a :class:`RawSourceSpec` naming the
official files (:class:`RawFileSpec`), the mirrors they are downloaded from, their
checksums and the function that turns their bytes into arrays. Every row is parsed from
a configuration entry (:func:`dataset_from_config`): the published ones (MNIST, KMNIST,
CIFAR-10, CIFAR-100) from :data:`~supermask_pipeline.images.published.PUBLISHED_DATASETS`,
a project's own from ``conf/<env>/datasets.yml`` (:func:`configure_datasets`, called by
the project's config loader). Formats: :mod:`~supermask_pipeline.images.formats`.

A file without a published checksum is trusted on first use: its sha256 is recorded in
``<root>/checksums.json`` and verified from then on
(:func:`~supermask_pipeline.images.sources.load_raw_images`).

Checksums of the files are always taken over the DECOMPRESSED bytes, so a file
re-compressed with another gzip (as in ``../shared/datasets/mnist``) is accepted,
while any change to its content is not. An archive is checked as served (its
published md5), and the files extracted from it are checked again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from supermask_pipeline.images.formats import ARRAY_KEYS, FORMATS
from supermask_pipeline.images.published import PUBLISHED_DATASETS

__all__ = [
    "RAW_SOURCES",
    "DatasetConfigError",
    "RawArchiveSpec",
    "RawFileSpec",
    "RawSourceSpec",
    "configure_datasets",
    "dataset_from_config",
]


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
            Where neither (nor ``download_md5``) is given, the file is trusted on first
            use (its sha256 recorded in ``checksums.json`` beside it).
        num_bytes: size of the decompressed file in bytes (reported in errors), or None.
        download_name: file name on the mirrors, e.g. ``"train-images-idx3-ubyte.gz"``;
            ``""`` for a file that is only distributed inside the source's archive.
        download_md5: md5 of ``download_name`` as served by the mirrors (the value
            torchvision's download checks); used to accept a local file only where it
            is the only published checksum (KMNIST) and the file is that download.
        num_images: number of images (rows) the file holds, checked by parse functions
            that cannot read it from a header (CIFAR-10: 10,000 per batch); None if
            the format itself states it (idx).
    """

    name: str
    role: str
    sha256: str = ""
    md5: str = ""
    num_bytes: int | None = None
    download_name: str = ""
    download_md5: str = ""
    num_images: int | None = None

    @property
    def published(self) -> bool:
        """Whether a checksum of the file is published (else it is trusted on first use)."""
        return bool(self.sha256 or self.md5 or self.download_md5)


@dataclass(frozen=True)
class RawArchiveSpec:
    """A tar archive in which a source's official files are distributed (CIFAR-10).

    The archive is looked up in the root folder as ``name``; it is downloaded as
    ``mirror + name``. Its files are extracted to ``<root>/<folder>/`` and looked up
    there, so a folder extracted by hand or by torchvision (same layout) is used as is.

    Attributes:
        name: file name of the archive, e.g. ``"cifar-10-python.tar.gz"``.
        md5: md5 hex digest of the archive as served (published, e.g. torchvision's
            ``tgz_md5``); verified before anything is extracted; ``""`` for none (the
            extracted files are then verified, or trusted on first use, one by one).
        num_bytes: size of the archive in bytes (reported in errors), or None.
        folder: folder inside the archive that holds the files, e.g.
            ``"cifar-10-batches-py"``.
    """

    name: str
    md5: str
    num_bytes: int | None
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
        format: ``idx`` | ``cifar_python`` | ``npz`` | ``hdf5`` (:data:`~supermask_pipeline.images.formats.FORMATS`).
        label_key: key of the labels in a ``cifar_python`` batch (``labels``, ``fine_labels``).
        array_keys: ``npz``/``hdf5``: (array, key in the file) pairs that differ from the
            default keys ``train_images``, ``train_labels``, ``test_images``, ``test_labels``.
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
    format: str = "idx"
    label_key: str = "labels"
    array_keys: tuple[tuple[str, str], ...] = ()



# --- datasets as configuration ----------------------------------------------------------------


class DatasetConfigError(ValueError):
    """A dataset entry (``conf/<env>/datasets.yml``) that cannot be parsed; the message names the field."""


_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_ENTRY_KEYS = ("format", "image_shape", "num_classes", "files", "mirrors", "archive", "label_key",
               "images_per_file", "keys", "reference")
_FILE_KEYS = ("name", "sha256", "md5", "num_bytes", "download_name", "download_md5", "num_images")
_ARCHIVE_KEYS = ("name", "md5", "num_bytes", "folder")
_IDX_ROLES = ("train_images", "train_labels", "test_images", "test_labels")


def _fail(name: str, message: str) -> DatasetConfigError:
    return DatasetConfigError(f"Dataset entry {name!r} (conf/<env>/datasets.yml): {message}")


def _known(name: str, where: str, values: Mapping[str, Any], known: tuple[str, ...]) -> None:
    if not isinstance(values, Mapping):
        raise _fail(name, f"{where} must be a mapping, got {values!r}.")
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise _fail(name, f"unknown key(s) {unknown} in {where}; known: {list(known)}.")


def _hex(name: str, where: str, value: Any, length: int) -> str:
    value = "" if value is None else str(value).lower()
    if value and not re.fullmatch(f"[0-9a-f]{{{length}}}", value):
        raise _fail(name, f"{where} must be {length} hex digits, got {value!r}.")
    return value


def _count(name: str, where: str, value: Any, optional: bool = True) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _fail(name, f"{where} must be a positive integer, got {value!r}.")
    return value


def _file(name: str, role: str, value: Any, default_images: int | None, mirrors: bool, fmt: str) -> RawFileSpec:
    where = f"files.{role}"
    if isinstance(value, str):
        value = {"name": value}
    _known(name, where, value, _FILE_KEYS)
    file_name = value.get("name")
    if not isinstance(file_name, str) or not file_name or "/" in file_name:
        raise _fail(name, f"{where}.name must be a file name (no folder), got {file_name!r}.")
    # Downloaded one by one (no archive): idx files are served gzipped, npz/HDF5 files as they are.
    download_name = value.get("download_name") or (
        (f"{file_name}.gz" if fmt == "idx" else file_name) if mirrors else "")
    return RawFileSpec(
        name=file_name,
        role=role,
        sha256=_hex(name, f"{where}.sha256", value.get("sha256"), 64),
        md5=_hex(name, f"{where}.md5", value.get("md5"), 32),
        num_bytes=_count(name, f"{where}.num_bytes", value.get("num_bytes")),
        download_name=download_name,
        download_md5=_hex(name, f"{where}.download_md5", value.get("download_md5"), 32),
        num_images=_count(name, f"{where}.num_images", value.get("num_images", default_images)),
    )


def dataset_from_config(name: str, entry: Mapping[str, Any]) -> RawSourceSpec:
    """Parse one dataset entry (the schema of ``conf/base/datasets.yml``) into a :class:`RawSourceSpec`.

    Entry keys: ``format`` (``idx`` | ``cifar_python`` | ``npz`` | ``hdf5``), ``image_shape``
    ([H, W, C]), ``num_classes``, ``files`` (role → file name, or → ``{name, sha256, md5,
    num_bytes, download_name, download_md5, num_images}``); optional ``mirrors`` (base URLs),
    ``archive`` (``{name, md5, num_bytes, folder}``, ``cifar_python``), ``label_key``
    (``cifar_python``, default ``labels``), ``images_per_file`` (``cifar_python``), ``keys``
    (``npz``/``hdf5``: array → key in the file), ``reference``. Roles: ``idx`` needs
    ``train_images``, ``train_labels``, ``test_images``, ``test_labels``; ``cifar_python``
    roles starting with ``train`` and ``test``; ``npz``/``hdf5`` one file, role ``data``.
    A file without ``sha256``, ``md5`` or ``download_md5`` is trusted on first use.

    Raises:
        DatasetConfigError: a bad name, an unknown or missing key, a bad value (the message
            names the entry and the field).
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise _fail(str(name), "the name must be lower case letters, digits and _, starting with a letter "
                               "(it names the folders data/01_raw/<name>/ and data/03_primary/<name>/).")
    _known(name, "the entry", entry, _ENTRY_KEYS)
    fmt = entry.get("format")
    if fmt not in FORMATS:
        raise _fail(name, f"format must be one of {list(FORMATS)}, got {fmt!r}.")
    shape = entry.get("image_shape")
    if (not isinstance(shape, (list, tuple)) or len(shape) != 3
            or any(isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in shape)):
        raise _fail(name, f"image_shape must be [height, width, channels] of positive integers, got {shape!r}.")
    num_classes = _count(name, "num_classes", entry.get("num_classes"), optional=False)
    if num_classes < 2:
        raise _fail(name, f"num_classes must be at least 2, got {num_classes}.")
    mirrors = entry.get("mirrors") or []
    if isinstance(mirrors, str) or not all(isinstance(m, str) for m in mirrors):
        raise _fail(name, f"mirrors must be a list of base URLs, got {mirrors!r}.")
    mirrors = tuple(m if m.endswith("/") else f"{m}/" for m in mirrors)
    files = entry.get("files")
    if not isinstance(files, Mapping) or not files:
        raise _fail(name, "files must map each role to a file name (or to {name, sha256, …}).")
    roles = list(files)
    if fmt == "idx" and sorted(roles) != sorted(_IDX_ROLES):
        raise _fail(name, f"an idx dataset has the files {list(_IDX_ROLES)}, got {roles}.")
    if fmt == "cifar_python" and (not any(r.startswith("train") for r in roles)
                                  or not any(r.startswith("test") for r in roles)
                                  or not all(r.startswith(("train", "test")) for r in roles)):
        raise _fail(name, f"a cifar_python dataset has files whose roles start with train and test, got {roles}.")
    if fmt in ("npz", "hdf5") and roles != ["data"]:
        raise _fail(name, f"an {fmt} dataset has one file, role data, got {roles}.")
    default_images = _count(name, "images_per_file", entry.get("images_per_file"))
    archive = entry.get("archive")
    archive_spec = None
    if archive is not None:
        if fmt != "cifar_python":
            raise _fail(name, "archive is for the cifar_python format only.")
        _known(name, "archive", archive, _ARCHIVE_KEYS)
        if not archive.get("name") or not archive.get("folder"):
            raise _fail(name, "archive needs name (e.g. cifar-10-python.tar.gz) and folder (its batches' folder).")
        archive_spec = RawArchiveSpec(name=str(archive["name"]), md5=_hex(name, "archive.md5", archive.get("md5"), 32),
                                      num_bytes=_count(name, "archive.num_bytes", archive.get("num_bytes")),
                                      folder=str(archive["folder"]))
    keys = entry.get("keys") or {}
    _known(name, "keys", keys, ARRAY_KEYS)
    if keys and fmt not in ("npz", "hdf5"):
        raise _fail(name, "keys is for the npz and hdf5 formats only.")
    label_key = entry.get("label_key", "labels")
    if not isinstance(label_key, str) or not label_key:
        raise _fail(name, f"label_key must be a key name, got {label_key!r}.")
    download = bool(mirrors) and archive_spec is None
    return RawSourceSpec(
        name=name,
        files=tuple(_file(name, role, value, default_images, download, fmt) for role, value in files.items()),
        mirrors=mirrors,
        image_shape=(int(shape[0]), int(shape[1]), int(shape[2])),
        num_classes=num_classes,
        parse=FORMATS[fmt],
        reference=str(entry.get("reference", "")),
        archive=archive_spec,
        format=fmt,
        label_key=label_key,
        array_keys=tuple((k, str(v)) for k, v in keys.items()),
    )


#: Known raw sources by name: the published ones, then a project's own
#: (:func:`configure_datasets`). An unknown name given to
#: :func:`~supermask_pipeline.images.sources.load_raw_images` fails with this list.
RAW_SOURCES: dict[str, RawSourceSpec] = {
    name: dataset_from_config(name, entry) for name, entry in PUBLISHED_DATASETS.items()
}
_CONFIGURED: set[str] = set()


def configure_datasets(entries: Mapping[str, Any] | None) -> list[str]:
    """Register a project's dataset entries (``conf/<env>/datasets.yml``) in :data:`RAW_SOURCES`.

    Entries of an earlier call that are no longer configured are removed; the published
    datasets stay. An entry that names a published dataset must equal it (a changed copy of
    MNIST would silently drop its checksums): give your dataset its own name.

    Args:
        entries: name → entry (see :func:`dataset_from_config`); None or empty for none.

    Returns:
        The names registered by this call, sorted.

    Raises:
        DatasetConfigError: a bad entry, or one that redefines a published dataset.
    """
    entries = dict(entries or {})
    parsed = {}
    for name, entry in entries.items():
        spec = dataset_from_config(name, entry)
        if name in PUBLISHED_DATASETS and spec != RAW_SOURCES.get(name, spec):
            raise _fail(name, f"{name!r} is a published dataset with its own checksums; give yours another "
                              f"name (e.g. my_{name}) and select it with --params=dataset=my_{name}.")
        parsed[name] = spec
    for name in _CONFIGURED - set(parsed):
        if name not in PUBLISHED_DATASETS:
            RAW_SOURCES.pop(name, None)
    RAW_SOURCES.update(parsed)
    _CONFIGURED.clear()
    _CONFIGURED.update(n for n in parsed if n not in PUBLISHED_DATASETS)
    return sorted(parsed)
