"""Write small datasets of one's own for tests: MNIST-format idx (.gz) and npz."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from supermask_pipeline.images import encode_idx

IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def random_arrays(num_train: int, num_test: int, shape=(28, 28), num_classes: int = 10, seed: int = 0):
    """uint8 images (N, *shape) with a class-dependent bright square, so a net can learn them; int labels."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for subset, n in (("train", num_train), ("test", num_test)):
        labels = rng.integers(0, num_classes, size=n).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, *shape), dtype=np.uint8)
        for i, label in enumerate(labels):
            row = 2 + 7 * (int(label) % 3)
            col = 2 + 7 * (int(label) // 3 % 3)
            images[i, row:row + 6, col:col + 6] = 250
        arrays[f"{subset}_images"], arrays[f"{subset}_labels"] = images, labels
    return arrays


def write_idx_dataset(folder: Path, arrays: dict, gz: bool = True) -> dict[str, Path]:
    """The four idx files of ``arrays`` in ``folder`` (``.gz`` by default), under MNIST's names."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for role, name in IDX_NAMES.items():
        data = encode_idx(arrays[role])
        path = folder / (f"{name}.gz" if gz else name)
        path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
        paths[role] = path
    return paths


def idx_entry(num_classes: int = 10, shape=(28, 28, 1)) -> dict:
    """A dataset entry for :func:`write_idx_dataset`'s files, without checksums (trust on first use)."""
    return {"format": "idx", "image_shape": list(shape), "num_classes": num_classes, "files": dict(IDX_NAMES)}


def write_npz_dataset(path: Path, arrays: dict, keys: dict | None = None) -> Path:
    """One ``.npz`` with the four arrays (labels as int64), named by ``keys`` (default: their roles)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = keys or {}
    np.savez(path, **{keys.get(role, role): (a.astype(np.int64) if "labels" in role else a) for role, a in arrays.items()})
    return path
