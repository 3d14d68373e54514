"""Read-only Kedro dataset for the official raw image files of a source (e.g. MNIST)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import AbstractDataset, DatasetError

from supermask_pipeline.images.sources import RawImageData, load_raw_images, missing_raw_files

__all__ = ["RawImageDataset"]


class RawImageDataset(AbstractDataset[None, RawImageData]):
    """The verified official files of a raw source, loaded with
    :func:`~supermask_pipeline.images.sources.load_raw_images`.

    Loading looks for the files in ``root`` (``<name>`` or ``<name>.gz``), downloads the
    missing ones when ``download`` is true, and verifies the sha256 of every file's
    decompressed content. Errors of the data package (missing files, checksum mismatch,
    truncated gzip) reach the user with their message intact, wrapped by Kedro in a
    :class:`kedro.io.core.DatasetError` (the original is its ``__cause__``).

    Example catalog entry (override ``root``/``download`` in ``conf/local/catalog.yml``)::

        raw_images:
          type: supermask_pipeline.datasets.RawImageDataset
          root: data/01_raw/mnist
          source: mnist
          download: true
    """

    def __init__(
        self,
        root: str,
        source: str = "mnist",
        download: bool = True,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Create a dataset reading ``source``'s files from ``root``.

        Args:
            root: folder with the official files (``data/01_raw/<source>``).
            source: key of :data:`~supermask_pipeline.images.specs.RAW_SOURCES`.
            download: whether missing files may be downloaded into ``root``.
            metadata: free-form metadata, ignored by Kedro.
        """
        self._root = Path(root).expanduser()
        self._source = source
        self._download = bool(download)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {
            "root": str(PurePosixPath(self._root)),
            "source": self._source,
            "download": self._download,
        }

    def _exists(self) -> bool:
        return not missing_raw_files(self._source, self._root)

    def load(self) -> RawImageData:
        """Load and verify the raw files.

        Returns:
            :class:`RawImageData`: uint8 images (N, H, W, C), int64 labels (N,), checksums.

        Raises:
            DatasetError: wrapping ``ValueError`` (unknown source) or a
                :class:`~supermask_pipeline.images.errors.RawDataError` with its message.
        """
        return load_raw_images(self._source, self._root, download=self._download)

    def save(self, data: None) -> None:
        """Not supported: raw files are only ever read.

        Raises:
            DatasetError: always.
        """
        raise DatasetError(
            f"RawImageDataset({self._root}) is read-only: raw files are never written by the pipeline."
        )
