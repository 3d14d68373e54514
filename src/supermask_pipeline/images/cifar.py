"""CIFAR-10 python batches (Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html): parsing.

The official ``cifar-10-python.tar.gz`` holds six batch files, each a Python 2 cPickle
(protocol 2) of a dict of uint8 rows and int labels. They are read by a restricted
unpickler that resolves only the three numpy globals an array needs and refuses
everything else (and every persistent id), so no code named by a file is ever imported
or run. :func:`parse_cifar_batch` turns one batch into NHWC images and int64 labels.

Extracting the archive is not done here but in :mod:`supermask_pipeline.images.archive`,
the same way for any source that comes as an archive.
"""

from __future__ import annotations

import io
import pickle

import numpy as np

from supermask_pipeline.images.errors import RawDataCorruptError

__all__ = ["parse_cifar_batch"]

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
    label_key: str = "labels",
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
        label_key: key of the labels: ``"labels"`` (CIFAR-10), ``"fine_labels"`` or
            ``"coarse_labels"`` (CIFAR-100, whose files ``train`` and ``test`` have the same layout).

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
    key = label_key.encode()
    if not isinstance(batch, dict) or b"data" not in batch or key not in batch:
        found = sorted(map(repr, batch)) if isinstance(batch, dict) else type(batch).__name__
        raise RawDataCorruptError(
            f"{name}: expected a dict with keys b'data' and {key!r} (CIFAR python "
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
    labels = batch[key]
    labels = np.asarray(labels) if isinstance(labels, (list, np.ndarray)) else None
    if labels is None or labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise RawDataCorruptError(f"{name}: {key!r} must be a list of integers.")
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
