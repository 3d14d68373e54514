"""Turn an :class:`~supermask_pipeline.images.splitting.ImageSplit` into tensors on a device.

The training engine keeps whole splits as tensors on the device (MNIST and CIFAR-10
fit in memory), so normalisation is done once here, vectorised over all images.
"""

from __future__ import annotations

import numpy as np
import torch

from supermask_pipeline.images.splitting import ImageSplit

__all__ = ["NORMALISATIONS", "channel_statistics", "split_to_tensors", "per_image_standardisation"]

#: Accepted ``normalisation`` names: per-image standardisation as Koster et al. (2022)
#: via ``tf.image.per_image_standardization``; ``scale_01`` (x / 255) as Zhou et al. (2019);
#: ``none`` keeps pixel values 0..255 as float32; ``per_channel_standardisation``:
#: (x / 255 - mean_c) / std_c with the per-channel statistics of the training split
#: (:func:`channel_statistics`), the usual CIFAR-10 preprocessing.
NORMALISATIONS = ("per_image_standardisation", "scale_01", "none", "per_channel_standardisation")


def per_image_standardisation(images: torch.Tensor) -> torch.Tensor:
    """Standardise each image to mean 0 and standard deviation 1, as ``tf.image.per_image_standardization``.

    For every image x of n = C * H * W values: ``(x - mean(x)) / max(std(x), 1 / sqrt(n))``
    with the population standard deviation; the floor keeps constant images finite
    (they become all zeros).

    Args:
        images: float tensor (N, ...) of any layout; statistics are over all but the first dim.

    Returns:
        Tensor of the same shape and dtype.
    """
    return _standardise_(images.clone())


def _standardise_(images: torch.Tensor) -> torch.Tensor:
    """:func:`per_image_standardisation` in place on ``images`` (contiguous), the same values:
    no 4-byte-a-value temporaries (a float copy of MNIST's training split is 172 MB)."""
    flat = images.view(images.shape[0], -1)
    num_values = flat.shape[1]
    mean = flat.mean(dim=1, keepdim=True)
    std = flat.std(dim=1, unbiased=False, keepdim=True)
    floor = torch.tensor(num_values, dtype=images.dtype, device=images.device).rsqrt()
    flat.sub_(mean).div_(torch.maximum(std, floor))
    return images


def channel_statistics(split: ImageSplit) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and population standard deviation of the pixel values x / 255.

    Statistics are over all images and pixels of the split (N * H * W values per
    channel). They are computed exactly from integer pixel histograms (sums of x and
    x² in arbitrary-precision integers), then converted to float64, so the result does
    not depend on the number or order of images and needs no float copy of the split.

    Args:
        split: images uint8 (N, H, W, C) with N ≥ 1.

    Returns:
        ``(mean, std)``: float64 arrays of shape (C,); ``std`` is 0 for a constant channel.

    Raises:
        ValueError: the split has no images.
    """
    images = split.images
    if images.shape[0] == 0 or images.shape[1] * images.shape[2] == 0:
        raise ValueError("channel_statistics needs a split with at least one pixel; found an empty split.")
    count = images.shape[0] * images.shape[1] * images.shape[2]
    levels = np.arange(256, dtype=np.int64)
    # bincount converts its input to intp (8 bytes a pixel): count in chunks of ~1M pixels.
    chunk = max(1, (1 << 20) // (images.shape[1] * images.shape[2]))
    means, stds = [], []
    for channel in range(images.shape[3]):
        histogram = np.zeros(256, dtype=np.int64)
        for start in range(0, images.shape[0], chunk):
            histogram += np.bincount(images[start : start + chunk, ..., channel].ravel(), minlength=256)
        total = int(histogram @ levels)  # ≤ 255 · count: exact in int64 for any realistic split
        total_sq = int(histogram @ (levels * levels))
        # Population variance of x: (n·Σx² − (Σx)²) / n², exact in Python integers.
        variance = (count * total_sq - total * total) / (count * count)
        means.append(total / count / 255.0)
        stds.append(float(np.sqrt(variance)) / 255.0)
    return np.asarray(means, dtype=np.float64), np.asarray(stds, dtype=np.float64)


def split_to_tensors(
    split: ImageSplit,
    normalisation: str,
    device: torch.device | str = "cpu",
    reference: ImageSplit | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of a split as tensors on ``device``, normalised.

    Pixels are first scaled to [0, 1] (x / 255) for ``per_image_standardisation``,
    ``scale_01`` and ``per_channel_standardisation``. Per-image standardisation is
    invariant to that scale except for its std floor 1 / sqrt(C * H * W), which
    therefore applies to [0, 1] pixel values (it only matters for nearly constant images).

    ``per_channel_standardisation`` computes (x / 255 − mean_c) / std_c with the
    statistics of ``reference`` (:func:`channel_statistics`): pass the training split as
    ``reference`` for the train, validation and test splits alike, so that all three use
    the training statistics. With ``reference=None`` the split's own statistics are used
    (right for the training split itself, wrong for validation and test). A channel
    with std 0 in the reference is only centred (divided by 1). The other
    normalisations do not use ``reference`` (its channel count is still checked), so
    callers may always pass it.

    Args:
        split: images uint8 (N, H, W, C), labels int64 (N,).
        normalisation: one of :data:`NORMALISATIONS`.
        device: where the tensors are placed, e.g. ``"cpu"`` or ``"cuda"``.
        reference: the split whose per-channel statistics ``per_channel_standardisation``
            uses (the training split); None: ``split`` itself.

    Returns:
        ``(images, labels)``: float32 (N, C, H, W) and int64 (N,) tensors on ``device``.

    Raises:
        ValueError: unknown ``normalisation`` (the message lists the choices), or a
            ``reference`` whose number of channels differs from ``split``'s.
    """
    if normalisation not in NORMALISATIONS:
        raise ValueError(
            f"Unknown normalisation {normalisation!r}; choose one of {', '.join(NORMALISATIONS)}."
        )
    if reference is not None and reference.images.shape[3] != split.images.shape[3]:
        raise ValueError(
            f"The reference split has {reference.images.shape[3]} channels but the split has "
            f"{split.images.shape[3]}; per-channel statistics need the same channels "
            "(pass the training split of the same data set as reference)."
        )
    device = torch.device(device)
    # Move the uint8 pixels (4x smaller than float32) before converting on the device.
    pixels = split.images if split.images.flags.writeable else split.images.copy()
    images = torch.from_numpy(pixels).to(device).permute(0, 3, 1, 2)
    images = images.to(torch.float32).contiguous()
    if normalisation in ("per_image_standardisation", "scale_01", "per_channel_standardisation"):
        images = images.div_(255.0)  # in place from here on: the uint8 → float32 copy is fresh
    if normalisation == "per_image_standardisation":
        images = _standardise_(images)
    elif normalisation == "per_channel_standardisation":
        mean, std = channel_statistics(split if reference is None else reference)
        std = np.where(std > 0, std, 1.0)
        mean_c = torch.tensor(mean, dtype=torch.float32, device=device).reshape(1, -1, 1, 1)
        std_c = torch.tensor(std, dtype=torch.float32, device=device).reshape(1, -1, 1, 1)
        images = images.sub_(mean_c).div_(std_c)  # in place: ``images`` is a fresh tensor
    # A copy, so that changing the tensor never changes the split.
    labels = torch.tensor(split.labels, dtype=torch.int64, device=device)
    return images, labels
