"""Batched, seeded data augmentation on the device (no per-sample Python).

The training engine keeps whole splits as tensors on the device and augments each
training batch there: an augmentation is a callable ``(images, generator) → images``
taking a float batch (B, C, H, W) and a :class:`torch.Generator` on the batch's device.
All random draws come from that generator, so a run is reproducible from its seed (and
resumable from the generator's state) and nothing synchronises with the host.

Recipe: the CIFAR augmentation of He et al. (2016, "Deep Residual Learning for Image
Recognition", sec. 4.2) used by Zhou et al. (2019): pad 4 pixels on every side, take
a random 32 × 32 crop, flip horizontally with probability 0.5.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from supermask_pipeline.registry import lookup

__all__ = ["AUGMENTATIONS", "get_augmentation", "random_crop_flip"]


def random_crop_flip(
    images: torch.Tensor, generator: torch.Generator, padding: int = 4, flip: bool = True
) -> torch.Tensor:
    """Random crop of the zero-padded image and random horizontal flip, independently per image.

    For each image: pad ``padding`` zeros on every side, crop H × W at offsets
    (dy, dx) drawn uniformly from {0, …, 2·padding} each (i.e. a shift of the content by
    −padding … +padding pixels), then, if ``flip``, mirror left-right with probability
    0.5. This is the CIFAR recipe (random crop 32 with 4-pixel padding plus horizontal
    flip; He et al. 2016, Zhou et al. 2019). Crop-then-flip and flip-then-crop have the
    same distribution because the offsets are symmetric.

    Padding happens here, after normalisation, so the padded pixels are zeros *in the
    normalised space*. Reference TF/PyTorch pipelines pad the raw image before
    normalising; zero padding after per-channel standardisation is the same as padding
    the raw image with the channel mean (after ``scale_01`` it is black padding as in
    the references; after per-image standardisation it is the image's own mean).

    Fully vectorised: the crop and flip become one source-pixel index per output pixel
    (one ``gather`` over the flattened pixels, then one mask that zeroes the padding),
    no Python loop over images. Random draws, in this order and all from ``generator`` on
    ``images.device``: offsets ``randint(0, 2·padding + 1, (2, B))`` (rows dy, columns
    dx), then, only if ``flip``, ``randint(0, 2, (B,))``. Every call advances the
    generator; the same generator state gives the same output on the same device
    (CPU and CUDA generators give different streams).

    Args:
        images: float tensor (B, C, H, W) on any device; contiguous or channels_last
            (the channels_last layout is kept; any other layout gives a contiguous result).
            Not modified.
        generator: a :class:`torch.Generator` on ``images.device``.
        padding: zero pixels added on every side, ≥ 0 (0: no crop, only the flip).
        flip: whether to flip horizontally with probability 0.5.

    Returns:
        A new tensor with the shape, dtype and device of ``images``.

    Raises:
        ValueError: ``images`` is not 4-D, ``padding`` is not an integer ≥ 0, or the
            generator is on another device type than ``images``.
    """
    if images.dim() != 4:
        raise ValueError(f"random_crop_flip expects images of shape (B, C, H, W); got shape {tuple(images.shape)}.")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be an integer ≥ 0, got {padding!r}.")
    if generator.device.type != images.device.type:
        raise ValueError(
            f"The generator is on {generator.device} but the images are on {images.device}; "
            "create the generator on the images' device: torch.Generator(device=images.device)."
        )
    batch, channels, height, width = images.shape
    device = images.device
    offsets = torch.randint(0, 2 * padding + 1, (2, batch), generator=generator, device=device) - padding
    rows = torch.arange(height, device=device) + offsets[0, :, None]  # (B, H) source row per output row
    cols = torch.arange(width, device=device).expand(batch, width)  # (B, W) output column before the flip
    if flip:
        flipped = torch.randint(0, 2, (batch, 1), generator=generator, device=device, dtype=torch.bool)
        cols = torch.where(flipped, width - 1 - cols, cols)
    cols = cols + offsets[1, :, None]  # (B, W) source column per output column
    # (B, H, W): output pixels that come from the zero padding.
    outside = ((rows < 0) | (rows >= height))[:, :, None] | ((cols < 0) | (cols >= width))[:, None, :]
    # Flat source pixel of every output pixel, clamped into the image (the padding is masked after).
    source = rows.clamp(0, height - 1)[:, :, None] * width + cols.clamp(0, width - 1)[:, None, :]  # (B, H, W)
    pixels = height * width
    if not images.is_contiguous() and images.is_contiguous(memory_format=torch.channels_last):
        # Gather from the (B, H·W, C) view, which is contiguous, so the result stays channels_last.
        flat = images.permute(0, 2, 3, 1).reshape(batch, pixels, channels)
        out = flat.gather(1, source.reshape(batch, pixels, 1).expand(batch, pixels, channels))
        out = out.reshape(batch, height, width, channels).masked_fill_(outside[..., None], 0)
        return out.permute(0, 3, 1, 2)
    flat = images.reshape(batch, channels, pixels)  # a copy only for other layouts
    out = flat.gather(2, source.reshape(batch, 1, pixels).expand(batch, channels, pixels))
    return out.reshape(batch, channels, height, width).masked_fill_(outside[:, None], 0)


#: Augmentation names → batched augmentations ``(images, generator) → images``; ``none``: None.
AUGMENTATIONS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None] = {
    "none": None,
    "crop_flip": random_crop_flip,
}


def get_augmentation(name: str) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None:
    """The augmentation registered as ``name`` in :data:`AUGMENTATIONS` (None for ``"none"``).

    Raises:
        ValueError: unknown name (the message lists the known names).
    """
    return lookup(AUGMENTATIONS, name, "augmentation")
