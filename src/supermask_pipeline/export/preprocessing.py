"""Pixels → the network's input, as the training did it (:func:`~supermask_pipeline.images.split_to_tensors`).

A shipped network receives raw images; this applies the normalisation recorded in the
compact file's header with the same tensor operations as the training data path, so the
logits are those of the run's evaluation (a test checks every normalisation against
``split_to_tensors``).
"""

from __future__ import annotations

import numpy as np
import torch

from supermask_pipeline.export.compact import InputSpec
from supermask_pipeline.images.normalisation import per_image_standardisation

__all__ = ["normalise_pixels"]


def normalise_pixels(images: np.ndarray | torch.Tensor, input_spec: InputSpec) -> torch.Tensor:
    """uint8 (or 0..255 valued) images (N, H, W, C) → float32 (N, C, H, W), normalised.

    Raises:
        ValueError: not a 4-d array, or an unknown normalisation, or per-channel statistics
            missing or of another channel count.
    """
    pixels = torch.as_tensor(np.asarray(images))
    if pixels.ndim != 4:
        raise ValueError(f"Images must be (N, H, W, C), got shape {tuple(pixels.shape)}.")
    x = pixels.permute(0, 3, 1, 2).to(torch.float32).contiguous()
    name = input_spec.normalisation
    if name in ("per_image_standardisation", "scale_01", "per_channel_standardisation"):
        x = x / 255.0
    if name == "per_image_standardisation":
        return per_image_standardisation(x)
    if name == "per_channel_standardisation":
        if input_spec.channel_mean is None or len(input_spec.channel_mean) != x.shape[1]:
            raise ValueError(f"per_channel_standardisation needs {x.shape[1]} channel means, got {input_spec.channel_mean}.")
        std = np.where(np.asarray(input_spec.channel_std) > 0, np.asarray(input_spec.channel_std), 1.0)
        mean_c = torch.tensor(np.asarray(input_spec.channel_mean), dtype=torch.float32).reshape(1, -1, 1, 1)
        std_c = torch.tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
        return x.sub_(mean_c).div_(std_c)
    if name not in ("scale_01", "none"):
        raise ValueError(f"Unknown normalisation {name!r} in the compact file's header.")
    return x
