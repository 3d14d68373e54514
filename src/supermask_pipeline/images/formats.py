"""The raw formats a dataset entry can name: parse a source's files, and tell a well-formed file.

- ``idx``: four idx files (MNIST's format, ``.gz`` or not), roles ``train_images``,
  ``train_labels``, ``test_images``, ``test_labels`` (:func:`parse_idx_source`).
- ``cifar_python``: the python batches of a CIFAR archive, roles ``train*`` and ``test*``
  (:func:`parse_cifar_source`), labels under the entry's ``label_key``.
- ``npz`` / ``hdf5``: one file (role ``data``) holding four arrays, uint8 images (N, H, W) or
  (N, H, W, C) and integer labels (N,), named by the entry's ``keys`` (default
  ``train_images``, ``train_labels``, ``test_images``, ``test_labels``) (:func:`parse_array_source`).
  An npz is read with ``allow_pickle=False``.

:func:`describe_content` is what the checksum message uses to tell "another dataset" (the
file parses and fits the entry) from "a damaged copy" (it does not).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from typing import TYPE_CHECKING

import h5py
import numpy as np

from supermask_pipeline.images.cifar import parse_cifar_batch
from supermask_pipeline.images.errors import RawDataCorruptError, RawDataError
from supermask_pipeline.images.idx import parse_idx

if TYPE_CHECKING:
    from supermask_pipeline.images.specs import RawFileSpec, RawSourceSpec

__all__ = [
    "ARRAY_KEYS",
    "FORMATS",
    "describe_content",
    "parse_array_source",
    "parse_cifar_source",
    "parse_idx_source",
]

#: The four arrays of an npz / HDF5 source (their default keys in the file).
ARRAY_KEYS = ("train_images", "train_labels", "test_images", "test_labels")

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _check_subset(spec: RawSourceSpec, images: np.ndarray, labels: np.ndarray, what: str, labels_what: str
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Images as uint8 (N, H, W, C) of the spec's shape, labels int64 (N,) in [0, num_classes)."""
    height, width, channels = spec.image_shape
    if images.ndim == 3 and channels == 1:
        images = images.reshape(*images.shape, 1)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (height, width, channels):
        raise RawDataCorruptError(
            f"{what}: expected uint8 images of shape (N, {height}, {width}) or (N, {height}, {width}, "
            f"{channels}) (image_shape of dataset {spec.name!r}), found {images.dtype} {images.shape}."
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0] or labels.dtype.kind not in "iu":
        raise RawDataCorruptError(
            f"{labels_what}: expected {images.shape[0]} integer labels (one per image of {what}), "
            f"found {labels.dtype} {labels.shape}."
        )
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise RawDataCorruptError(
            f"{labels_what}: labels must lie in [0, {spec.num_classes}) (num_classes of dataset "
            f"{spec.name!r}), found [{labels.min()}, {labels.max()}]."
        )
    return np.ascontiguousarray(images), labels


def parse_idx_source(spec: RawSourceSpec, contents: Mapping[str, bytes | bytearray]) -> Arrays:
    """Parse the four idx files of an ``idx`` source.

    Returns:
        ``(train_images, train_labels, test_images, test_labels)``: uint8 (N, H, W, C) and int64 (N,).

    Raises:
        RawDataCorruptError: a file is not idx, or its shape, dtype or labels do not fit the spec.
    """
    names = {f.role: f.name for f in spec.files}
    arrays: list[np.ndarray] = []
    for subset in ("train", "test"):
        images = parse_idx(contents[f"{subset}_images"], names[f"{subset}_images"])
        labels = parse_idx(contents[f"{subset}_labels"], names[f"{subset}_labels"])
        arrays += _check_subset(spec, images, labels, names[f"{subset}_images"], names[f"{subset}_labels"])
    return arrays[0], arrays[1], arrays[2], arrays[3]


def parse_cifar_source(spec: RawSourceSpec, contents: Mapping[str, bytes | bytearray]) -> Arrays:
    """Parse the batches of a ``cifar_python`` source (roles ``train*`` then ``test*``, in spec order).

    Returns:
        ``(train_images, train_labels, test_images, test_labels)``: uint8 NHWC and int64 (N,).

    Raises:
        RawDataCorruptError: see :func:`~supermask_pipeline.images.cifar.parse_cifar_batch`.
    """
    arrays: list[np.ndarray] = []
    for subset in ("train", "test"):
        batches = [
            parse_cifar_batch(contents[f.role], f.name, spec.image_shape, spec.num_classes, f.num_images,
                              label_key=spec.label_key)
            for f in spec.files
            if f.role.startswith(subset)
        ]
        arrays += [np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])]
    return arrays[0], arrays[1], arrays[2], arrays[3]


def _read_arrays(spec: RawSourceSpec, data: bytes | bytearray, name: str) -> dict[str, np.ndarray]:
    keys = dict(zip(ARRAY_KEYS, ARRAY_KEYS)) | dict(spec.array_keys)
    stream = io.BytesIO(bytes(data))
    try:
        if spec.format == "npz":
            with np.load(stream, allow_pickle=False) as npz:
                found = set(npz.files)
                missing = [keys[k] for k in ARRAY_KEYS if keys[k] not in found]
                arrays = {} if missing else {k: npz[keys[k]] for k in ARRAY_KEYS}
        else:
            with h5py.File(stream, "r") as h5:
                found = set(h5.keys())
                missing = [keys[k] for k in ARRAY_KEYS if not isinstance(h5.get(keys[k]), h5py.Dataset)]
                arrays = {} if missing else {k: h5[keys[k]][()] for k in ARRAY_KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise RawDataCorruptError(
            f"{name}: not a readable {spec.format} file (truncated or another format?): {type(exc).__name__}: {exc}."
        ) from exc
    if missing:
        raise RawDataCorruptError(
            f"{name}: arrays {missing} missing (found {sorted(found)}); name them with `keys:` in the "
            f"dataset entry {spec.name!r}."
        )
    return arrays


def parse_array_source(spec: RawSourceSpec, contents: Mapping[str, bytes | bytearray]) -> Arrays:
    """Parse the one file (role ``data``) of an ``npz`` or ``hdf5`` source.

    Returns:
        ``(train_images, train_labels, test_images, test_labels)``: uint8 (N, H, W, C), int64 (N,).

    Raises:
        RawDataCorruptError: not an npz/HDF5 file, an array missing, or arrays that do not fit the spec.
    """
    file = spec.files[0]
    arrays = _read_arrays(spec, contents[file.role], file.name)
    result: list[np.ndarray] = []
    for subset in ("train", "test"):
        result += _check_subset(spec, arrays[f"{subset}_images"], arrays[f"{subset}_labels"],
                                f"{file.name}:{subset}_images", f"{file.name}:{subset}_labels")
    return result[0], result[1], result[2], result[3]


#: Format name → parse function of a whole source.
FORMATS = {
    "idx": parse_idx_source,
    "cifar_python": parse_cifar_source,
    "npz": parse_array_source,
    "hdf5": parse_array_source,
}


def describe_content(spec: RawSourceSpec, file: RawFileSpec, content: bytes | bytearray) -> tuple[bool, str]:
    """Whether ``content`` is a well-formed file of the spec's format and image shape, and what it holds.

    Used once a checksum differs: a file that parses and fits the spec is most likely another
    dataset in the same format; one that does not is most likely a damaged copy.

    Returns:
        ``(well_formed, description)``, e.g. ``(True, "a well-formed idx file of 600 images of 28×28")``
        or ``(False, "header says shape (60000, 28, 28) …, file has 1000 bytes")``.
    """
    height, width, _ = spec.image_shape
    try:
        if spec.format == "idx":
            array = parse_idx(content, file.name)
            if file.role.endswith("_images"):
                if array.ndim not in (3, 4) or array.shape[1:3] != (height, width):
                    return False, f"an idx file of shape {array.shape}, not images of {height}×{width}"
                return True, f"a well-formed idx file of {array.shape[0]} images of {height}×{width}"
            if array.ndim != 1:
                return False, f"an idx file of shape {array.shape}, not labels"
            return True, f"a well-formed idx file of {array.shape[0]} labels"
        if spec.format == "cifar_python":
            images, _ = parse_cifar_batch(content, file.name, spec.image_shape, spec.num_classes, None,
                                          label_key=spec.label_key)
            return True, f"a well-formed CIFAR python batch of {images.shape[0]} images"
        train_images, _, test_images, _ = parse_array_source(spec, {file.role: content})
        return True, (f"a well-formed {spec.format} file of {train_images.shape[0]} + {test_images.shape[0]} "
                      f"images of {height}×{width}")
    except RawDataError as exc:
        return False, str(exc)
