"""The known raw image sources: official files, mirrors, published checksums and parsers.

A source is one row of :data:`RAW_SOURCES`, a :class:`RawSourceSpec` naming the
official files (:class:`RawFileSpec`), the mirrors they are downloaded from, their
published checksums and the function that turns their bytes into arrays. MNIST comes
as four gzipped idx files (parsed by :func:`~supermask_pipeline.images.idx.parse_idx`);
CIFAR-10 as one archive (:class:`RawArchiveSpec`, ``cifar-10-python.tar.gz``) of python
batches (parsed by :func:`~supermask_pipeline.images.cifar.parse_cifar_batch`).

Checksums of the files are always taken over the DECOMPRESSED bytes, so a file
re-compressed with another gzip (as in ``../shared/datasets/mnist``) is accepted,
while any change to its content is not. An archive is checked as served (its
published md5), and the files extracted from it are checked again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from supermask_pipeline.images.cifar import parse_cifar_batch
from supermask_pipeline.images.errors import RawDataCorruptError
from supermask_pipeline.images.idx import parse_idx

__all__ = [
    "RAW_SOURCES",
    "RawArchiveSpec",
    "RawFileSpec",
    "RawSourceSpec",
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
        num_bytes: size of the decompressed file in bytes (reported in errors).
        download_name: file name on the mirrors, e.g. ``"train-images-idx3-ubyte.gz"``;
            ``""`` for a file that is only distributed inside the source's archive.
        download_md5: md5 of ``download_name`` as served by the mirrors (the value
            torchvision's download checks); not used to accept a local file,
            because a re-compressed file has other bytes and the same content.
        num_images: number of images (rows) the file holds, checked by parse functions
            that cannot read it from a header (CIFAR-10: 10,000 per batch); None if
            the format itself states it (idx).

    Raises:
        ValueError: (on construction) neither ``sha256`` nor ``md5`` given.
    """

    name: str
    role: str
    sha256: str
    md5: str
    num_bytes: int
    download_name: str = ""
    download_md5: str = ""
    num_images: int | None = None

    def __post_init__(self) -> None:
        if not (self.sha256 or self.md5):
            raise ValueError(f"RawFileSpec {self.name!r} needs a published sha256 or md5 to verify.")


@dataclass(frozen=True)
class RawArchiveSpec:
    """A tar archive in which a source's official files are distributed (CIFAR-10).

    The archive is looked up in the root folder as ``name``; it is downloaded as
    ``mirror + name``. Its files are extracted to ``<root>/<folder>/`` and looked up
    there, so a folder extracted by hand or by torchvision (same layout) is used as is.

    Attributes:
        name: file name of the archive, e.g. ``"cifar-10-python.tar.gz"``.
        md5: md5 hex digest of the archive as served (published, e.g. torchvision's
            ``tgz_md5``); verified before anything is extracted.
        num_bytes: size of the archive in bytes (reported in errors).
        folder: folder inside the archive that holds the files, e.g.
            ``"cifar-10-batches-py"``.
    """

    name: str
    md5: str
    num_bytes: int
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


# --- MNIST: four gzipped idx files -------------------------------------------------------------


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

# --- CIFAR-10: one archive of python batches ---------------------------------------------------


def _parse_cifar(
    spec: RawSourceSpec, contents: Mapping[str, bytes | bytearray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse the batches (roles ``train_*`` then ``test_*``, in spec order) into NHWC arrays."""
    arrays = []
    for subset in ("train", "test"):
        batches = [
            parse_cifar_batch(
                contents[f.role], f.name, spec.image_shape, spec.num_classes, f.num_images
            )
            for f in spec.files
            if f.role.startswith(subset)
        ]
        arrays += [np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])]
    return arrays[0], arrays[1], arrays[2], arrays[3]


def _cifar_file(name: str, role: str, md5: str, num_bytes: int) -> RawFileSpec:
    return RawFileSpec(name=name, role=role, sha256="", md5=md5, num_bytes=num_bytes, num_images=10000)


# Archive, url and md5s as in torchvision.datasets.CIFAR10 (url, tgz_md5, train_list,
# test_list); sizes of the archive and of the extracted batches as listed by their users.
CIFAR10 = RawSourceSpec(
    name="cifar10",
    files=(
        _cifar_file("data_batch_1", "train_batch_1", "c99cafc152244af753f735de768cd75f", 31035704),
        _cifar_file("data_batch_2", "train_batch_2", "d4bba439e000b95fd0a9bffe97cbabec", 31035320),
        _cifar_file("data_batch_3", "train_batch_3", "54ebc095f3ab1f0389bbae665268c751", 31035999),
        _cifar_file("data_batch_4", "train_batch_4", "634d18415352ddfa80567beed471001a", 31035696),
        _cifar_file("data_batch_5", "train_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb", 31035623),
        _cifar_file("test_batch", "test_batch", "40351d587109b95175f43aff81a1287e", 31035526),
    ),
    mirrors=("https://www.cs.toronto.edu/~kriz/",),
    image_shape=(32, 32, 3),
    num_classes=10,
    parse=_parse_cifar,
    reference=(
        "Krizhevsky: Learning Multiple Layers of Features from Tiny Images (2009); python "
        "batches as described on https://www.cs.toronto.edu/~kriz/cifar.html."
    ),
    archive=RawArchiveSpec(
        name="cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        num_bytes=170498071,
        folder="cifar-10-batches-py",
    ),
)

#: Known raw sources by name. An unknown name given to
#: :func:`~supermask_pipeline.images.sources.load_raw_images` fails with this list.
RAW_SOURCES: dict[str, RawSourceSpec] = {MNIST.name: MNIST, CIFAR10.name: CIFAR10}
