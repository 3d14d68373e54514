"""Kedro dataset storing one :class:`~supermask_pipeline.images.splitting.ImageSplit` as HDF5."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

import h5py
import numpy as np
from kedro.io.core import AbstractDataset, DatasetError

from supermask_pipeline.atomic_write import atomic_path
from supermask_pipeline.images.splitting import CONTENT_DIGEST, ImageSplit, split_content_sha256

__all__ = ["HDF5SplitDataset", "SplitCorruptError"]

_FIX = "Rerun `kedro run --pipeline=data_processing` to write it again from the verified raw files."


class SplitCorruptError(DatasetError):
    """A split file whose images or labels no longer have the content checksum written with them
    (attribute ``content_sha256``), or that has none (written before splits carried one)."""

_COMPRESSIONS = (None, "gzip", "lzf")


class HDF5SplitDataset(AbstractDataset[ImageSplit, ImageSplit]):
    """An image split in one HDF5 file (h5py), written atomically and validated on load.

    Layout: dataset ``images`` uint8 (N, H, W, C), dataset ``labels`` int64 (N,), and the
    split's ``attrs`` as HDF5 attributes of the file's root group (``source``, ``split``,
    ``split_seed``, ``num_images``, ``num_classes``, ``sha256:<raw file>``, ``raw_root``), and
    ``content_sha256``, the sha256 of the images' and labels' bytes
    (:func:`~supermask_pipeline.images.splitting.split_content_sha256`), computed from the
    data on every save.

    Saving writes a temporary file in the target's folder, flushes and fsyncs it and
    renames it onto the target with ``os.replace``
    (:func:`supermask_pipeline.atomic_write.atomic_path`), so readers see the old file or the
    new one, never half of one; on failure the temporary file is removed and any
    previous file is left as it was.

    Loading checks that the file exists and opens as HDF5 (a truncated or corrupt file is
    refused), that both datasets are present with the dtypes and shapes above, that
    attribute ``num_images`` equals N, that labels lie in [0, ``num_classes``), and that the
    content has the sha256 of attribute ``content_sha256`` (about 30 ms for MNIST's three
    splits). (Both datasets are integers, so there is no NaN to look for.) Each failure raises
    :class:`kedro.io.core.DatasetError` naming the file, what was expected and what was
    found (:class:`SplitCorruptError` for the checksum); loading never modifies the file.

    Example catalog entry::

        mnist_train:
          type: supermask_pipeline.datasets.HDF5SplitDataset
          filepath: data/05_model_input/mnist/train.h5
    """

    def __init__(
        self,
        filepath: str | os.PathLike[str],
        metadata: dict[str, Any] | None = None,
        compression: str | None = None,
    ) -> None:
        """Create a dataset for ``filepath``.

        Args:
            filepath: local path of the ``.h5`` file.
            metadata: free-form metadata, ignored by Kedro (e.g. for kedro-viz).
            compression: HDF5 filter for both datasets on save: ``None``, ``"gzip"`` or ``"lzf"``.

        Raises:
            DatasetError: unknown ``compression``.
        """
        if compression not in _COMPRESSIONS:
            raise DatasetError(
                f"HDF5SplitDataset compression must be one of {_COMPRESSIONS}, got {compression!r}."
            )
        self._filepath = Path(filepath).expanduser()
        self._compression = compression
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(PurePosixPath(self._filepath)), "compression": self._compression}

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def load(self) -> ImageSplit:
        """Read and validate the split.

        Returns:
            :class:`ImageSplit` with images uint8 (N, H, W, C), labels int64 (N,) and the
            file's attributes (str, int or float values).

        Raises:
            DatasetError: file missing (run the data_processing pipeline), unreadable
                (truncated or corrupt), a dataset missing, wrong dtype or shape,
                ``num_images`` not N, or labels out of range.
            SplitCorruptError: the content's sha256 differs from attribute ``content_sha256``,
                or the file has no such attribute (written by an older version); rerun
                data_processing.
        """
        path = self._filepath
        if not path.is_file():
            raise DatasetError(
                f"HDF5 split file {path} does not exist. Create it with "
                f"`kedro run --pipeline=data_processing`."
            )
        try:
            with h5py.File(path, "r") as h5:
                for key in ("images", "labels"):
                    if not isinstance(h5.get(key), h5py.Dataset):
                        raise DatasetError(
                            f"HDF5 split file {path}: expected datasets 'images' and 'labels', "
                            f"found keys {sorted(h5.keys())}."
                        )
                images_ds, labels_ds = h5["images"], h5["labels"]
                _check(path, "images", images_ds.dtype == np.uint8 and images_ds.ndim == 4,
                       "uint8 of shape (N, H, W, C)", f"{images_ds.dtype} of shape {images_ds.shape}")
                _check(path, "labels", labels_ds.dtype == np.int64 and labels_ds.ndim == 1,
                       "int64 of shape (N,)", f"{labels_ds.dtype} of shape {labels_ds.shape}")
                num_images = images_ds.shape[0]
                _check(path, "labels", labels_ds.shape[0] == num_images,
                       f"{num_images} labels (one per image)", f"{labels_ds.shape[0]}")
                attrs = {key: _from_hdf5(value) for key, value in h5.attrs.items()}
                images = images_ds[()]
                labels = labels_ds[()]
        except (OSError, KeyError, RuntimeError, ValueError) as exc:  # h5py's errors for a damaged file
            raise DatasetError(f"HDF5 split file {path} could not be read (truncated or corrupt?): {exc}") from exc

        _check(path, "attribute num_images", attrs.get("num_images") == num_images,
               f"{num_images} (the number of images)", repr(attrs.get("num_images", "missing")))
        num_classes = attrs.get("num_classes")
        _check(path, "attribute num_classes", isinstance(num_classes, int) and num_classes > 0,
               "a positive integer", repr(num_classes if "num_classes" in attrs else "missing"))
        if labels.size:
            low, high = int(labels.min()), int(labels.max())
            _check(path, "labels", low >= 0 and high < num_classes,
                   f"values in [0, {num_classes})", f"values in [{low}, {high}]")
        expected = attrs.get(CONTENT_DIGEST)
        if not isinstance(expected, str):
            # Refused rather than accepted with a warning: an unverifiable split is what let a
            # corrupted file train silently, and data_processing rewrites it in seconds.
            raise SplitCorruptError(
                f"HDF5 split file {path} has no content checksum (attribute {CONTENT_DIGEST}; written by an "
                f"older version), so it cannot be verified. {_FIX}"
            )
        found = split_content_sha256(images, labels)
        if found != expected:
            raise SplitCorruptError(
                f"HDF5 split file {path} is corrupt: the sha256 of its images and labels is {found}, "
                f"the one written with it {expected}. {_FIX}"
            )
        try:
            return ImageSplit(images=images, labels=labels, attrs=attrs)
        except ValueError as exc:
            raise DatasetError(f"HDF5 split file {path}: {exc}") from exc

    def save(self, data: ImageSplit) -> None:
        """Write the split atomically (temporary file, fsync, ``os.replace``).

        Args:
            data: the split; its attrs become HDF5 attributes.

        Raises:
            DatasetError: ``data`` is not an :class:`ImageSplit` or writing failed (the
                previous file, if any, is then unchanged).
        """
        if not isinstance(data, ImageSplit):
            raise DatasetError(
                f"HDF5SplitDataset({self._filepath}) saves an ImageSplit, got {type(data).__name__}."
            )
        # atomic_path yields a fresh name beside the target (same file system, so the
        # rename is atomic); h5py creates it itself, so it gets the usual permissions (umask).
        with atomic_path(self._filepath) as tmp:
            with h5py.File(tmp, "x") as h5:
                _write_split(h5, data, self._compression)
                h5.flush()


def _check(path: Path, what: str, ok: bool, expected: str, found: str) -> None:
    if not ok:
        raise DatasetError(f"HDF5 split file {path}: {what} expected {expected}, found {found}.")


def _from_hdf5(value: Any) -> str | int | float:
    """HDF5 attribute values (numpy scalars, bytes) as plain Python str, int or float."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _write_split(h5: h5py.File, split: ImageSplit, compression: str | None) -> None:
    h5.create_dataset("images", data=split.images, dtype=np.uint8, compression=compression)
    h5.create_dataset("labels", data=split.labels, dtype=np.int64, compression=compression)
    _write_attrs(h5, {**split.attrs, CONTENT_DIGEST: split_content_sha256(split.images, split.labels)})


def _write_attrs(h5: h5py.File, attrs: dict[str, str | int | float]) -> None:
    for key, value in attrs.items():
        h5.attrs[key] = value
