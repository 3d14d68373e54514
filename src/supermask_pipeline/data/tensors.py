"""Turn an :class:`~supermask_pipeline.data.splitting.ImageSplit` into tensors on a device.

The training engine keeps whole splits as tensors on the device (MNIST and CIFAR-10
fit in memory), so normalisation is done once here, vectorised over all images.
"""

from __future__ import annotations

import torch

from supermask_pipeline.data.splitting import ImageSplit

__all__ = ["NORMALISATIONS", "split_to_tensors", "per_image_standardisation"]

#: Accepted ``normalisation`` names: per-image standardisation as Koster et al. (2022)
#: via ``tf.image.per_image_standardization``; ``scale_01`` (x / 255) as Zhou et al. (2019);
#: ``none`` keeps pixel values 0..255 as float32.
NORMALISATIONS = ("per_image_standardisation", "scale_01", "none")


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
    flat = images.reshape(images.shape[0], -1)
    num_values = flat.shape[1]
    mean = flat.mean(dim=1, keepdim=True)
    std = flat.std(dim=1, unbiased=False, keepdim=True)
    floor = torch.tensor(num_values, dtype=images.dtype, device=images.device).rsqrt()
    return ((flat - mean) / torch.maximum(std, floor)).reshape(images.shape)


def split_to_tensors(
    split: ImageSplit, normalisation: str, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of a split as tensors on ``device``, normalised.

    Pixels are first scaled to [0, 1] (x / 255) for ``per_image_standardisation`` and
    ``scale_01``. Per-image standardisation is invariant to that scale except for its
    std floor 1 / sqrt(C * H * W), which therefore applies to [0, 1] pixel values
    (it only matters for nearly constant images).

    Args:
        split: images uint8 (N, H, W, C), labels int64 (N,).
        normalisation: one of :data:`NORMALISATIONS`.
        device: where the tensors are placed, e.g. ``"cpu"`` or ``"cuda"``.

    Returns:
        ``(images, labels)``: float32 (N, C, H, W) and int64 (N,) tensors on ``device``.

    Raises:
        ValueError: unknown ``normalisation`` (the message lists the choices).
    """
    if normalisation not in NORMALISATIONS:
        raise ValueError(
            f"Unknown normalisation {normalisation!r}; choose one of {', '.join(NORMALISATIONS)}."
        )
    device = torch.device(device)
    # Move the uint8 pixels (4x smaller than float32) before converting on the device.
    pixels = split.images if split.images.flags.writeable else split.images.copy()
    images = torch.from_numpy(pixels).to(device).permute(0, 3, 1, 2)
    images = images.to(torch.float32).contiguous()
    if normalisation in ("per_image_standardisation", "scale_01"):
        images = images / 255.0
    if normalisation == "per_image_standardisation":
        images = per_image_standardisation(images)
    # A copy, so that changing the tensor never changes the split.
    labels = torch.tensor(split.labels, dtype=torch.int64, device=device)
    return images, labels
