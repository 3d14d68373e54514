"""The published datasets as configuration entries, in the schema of ``conf/base/datasets.yml``.

Each entry is what a user would write for their own dataset (see README, *Your own dataset*);
:func:`~supermask_pipeline.images.specs.dataset_from_config` parses every one of them into a
:class:`~supermask_pipeline.images.specs.RawSourceSpec`. They live in the package (not in
``conf/``) so that the library knows them without Kedro.

Sources of the checksums:

- MNIST: mirrors and ``.gz`` md5s as in ``torchvision.datasets.MNIST`` (``mirrors``,
  ``resources``); sha256/md5 of the decompressed files from ``../shared/datasets/mnist/README.md``.
- KMNIST (Clanuwat et al. 2018): mirror and ``.gz`` md5s as in ``torchvision.datasets.KMNIST``;
  no checksum of the decompressed files is published, so a decompressed copy is trusted on
  first use and recorded in ``checksums.json``.
- CIFAR-10 / CIFAR-100 (Krizhevsky 2009): archive URL, ``tgz_md5`` and the per-file md5s of
  ``torchvision.datasets.CIFAR10`` / ``CIFAR100`` (``train_list``, ``test_list``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["PUBLISHED_DATASETS"]


def _idx_file(name: str, sha256: str, md5: str, num_bytes: int, gz_md5: str) -> dict[str, Any]:
    return {"name": name, "sha256": sha256, "md5": md5, "num_bytes": num_bytes,
            "download_name": f"{name}.gz", "download_md5": gz_md5}


def _gz_file(name: str, gz_md5: str) -> dict[str, Any]:
    return {"name": name, "download_name": f"{name}.gz", "download_md5": gz_md5}


def _batch(name: str, md5: str, num_bytes: int | None = None) -> dict[str, Any]:
    return {"name": name, "md5": md5, "num_bytes": num_bytes}


PUBLISHED_DATASETS: dict[str, dict[str, Any]] = {
    "mnist": {
        "format": "idx",
        "image_shape": [28, 28, 1],
        "num_classes": 10,
        "mirrors": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
        "files": {
            "train_images": _idx_file(
                "train-images-idx3-ubyte", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                "6bbc9ace898e44ae57da46a324031adb", 47040016, "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            "train_labels": _idx_file(
                "train-labels-idx1-ubyte", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                "a25bea736e30d166cdddb491f175f624", 60008, "d53e105ee54ea40749a09fcbcd1e9432"),
            "test_images": _idx_file(
                "t10k-images-idx3-ubyte", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                "2646ac647ad5339dbf082846283269ea", 7840016, "9fb629c4189551a2d022fa330f9573f3"),
            "test_labels": _idx_file(
                "t10k-labels-idx1-ubyte", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                "27ae3e4e09519cfbb04c329615203637", 10008, "ec29112dd5afa0611ce80d1b7f02629c"),
        },
        "reference": "LeCun, Cortes, Burges: The MNIST database of handwritten digits (idx format).",
    },
    "kmnist": {
        "format": "idx",
        "image_shape": [28, 28, 1],
        "num_classes": 10,
        "mirrors": ["http://codh.rois.ac.jp/kmnist/dataset/kmnist/"],
        "files": {
            "train_images": _gz_file("train-images-idx3-ubyte", "bdb82020997e1d708af4cf47b453dcf7"),
            "train_labels": _gz_file("train-labels-idx1-ubyte", "e144d726b3acfaa3e44228e80efcd344"),
            "test_images": _gz_file("t10k-images-idx3-ubyte", "5c965bf0a639b31b8f53240b1b52f4d7"),
            "test_labels": _gz_file("t10k-labels-idx1-ubyte", "7320c461ea6c1c855c0b718fb2a4b134"),
        },
        "reference": "Clanuwat et al.: Deep Learning for Classical Japanese Literature (2018), Kuzushiji-MNIST.",
    },
    "cifar10": {
        "format": "cifar_python",
        "image_shape": [32, 32, 3],
        "num_classes": 10,
        "label_key": "labels",
        "images_per_file": 10000,
        "mirrors": ["https://www.cs.toronto.edu/~kriz/"],
        "archive": {"name": "cifar-10-python.tar.gz", "md5": "c58f30108f718f92721af3b95e74349a",
                    "num_bytes": 170498071, "folder": "cifar-10-batches-py"},
        "files": {
            "train_batch_1": _batch("data_batch_1", "c99cafc152244af753f735de768cd75f", 31035704),
            "train_batch_2": _batch("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec", 31035320),
            "train_batch_3": _batch("data_batch_3", "54ebc095f3ab1f0389bbae665268c751", 31035999),
            "train_batch_4": _batch("data_batch_4", "634d18415352ddfa80567beed471001a", 31035696),
            "train_batch_5": _batch("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb", 31035623),
            "test_batch": _batch("test_batch", "40351d587109b95175f43aff81a1287e", 31035526),
        },
        "reference": ("Krizhevsky: Learning Multiple Layers of Features from Tiny Images (2009); python "
                      "batches as described on https://www.cs.toronto.edu/~kriz/cifar.html."),
    },
    "cifar100": {
        "format": "cifar_python",
        "image_shape": [32, 32, 3],
        "num_classes": 100,
        "label_key": "fine_labels",
        "mirrors": ["https://www.cs.toronto.edu/~kriz/"],
        "archive": {"name": "cifar-100-python.tar.gz", "md5": "eb9058c3a382ffc7106e4002c42a8d85",
                    "num_bytes": 169001437, "folder": "cifar-100-python"},
        "files": {
            "train": {**_batch("train", "16019d7e3df5f24257cddd939b257f8d"), "num_images": 50000},
            "test": {**_batch("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"), "num_images": 10000},
        },
        "reference": ("Krizhevsky: Learning Multiple Layers of Features from Tiny Images (2009); CIFAR-100 "
                      "python version, 100 fine labels."),
    },
}
