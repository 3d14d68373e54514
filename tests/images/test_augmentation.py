"""Batched random crop + flip: every output is a crop of the padded input, seeded, vectorised."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from supermask_pipeline.images import AUGMENTATIONS, get_augmentation, random_crop_flip


def _generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _candidates(image: torch.Tensor, padding: int) -> list[tuple[int, int, bool, torch.Tensor]]:
    """All (dy, dx, flipped, crop) of one (C, H, W) image: crops of the zero-padded image at
    offsets 0..2p, each also mirrored; (2p + 1)² · 2 possibilities."""
    height, width = image.shape[-2:]
    padded = F.pad(image, (padding,) * 4)
    result = []
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = padded[:, dy : dy + height, dx : dx + width]
            result += [(dy, dx, False, crop), (dy, dx, True, crop.flip(-1))]
    return result


def _assert_every_output_is_a_crop(images: torch.Tensor, out: torch.Tensor, padding: int) -> None:
    for index, (image, result) in enumerate(zip(images.cpu(), out.cpu())):
        matches = [(dy, dx, f) for dy, dx, f, crop in _candidates(image, padding) if torch.equal(result, crop)]
        assert len(matches) == 1, f"image {index}: {len(matches)} matching crops"


def _random_images(batch: int = 16, channels: int = 3, size: int = 8, seed: int = 0) -> torch.Tensor:
    # Values in [1, 2): never zero, so padding is recognisable and all crops differ.
    return torch.rand(batch, channels, size, size, generator=_generator(seed)) + 1.0


@pytest.mark.parametrize("padding", [2, 4])
def test_every_output_is_some_crop_of_the_padded_input(padding):
    images = _random_images()
    out = random_crop_flip(images, _generator(1), padding=padding)
    assert out.shape == images.shape and out.dtype == images.dtype and out.device == images.device
    _assert_every_output_is_a_crop(images, out, padding)


def test_padding_0_without_flip_is_the_identity():
    images = _random_images()
    out = random_crop_flip(images, _generator(1), padding=0, flip=False)
    assert torch.equal(out, images) and out.data_ptr() != images.data_ptr()


def test_padding_0_with_flip_only_mirrors():
    images = _random_images(batch=64)
    out = random_crop_flip(images, _generator(2), padding=0)
    same = (out == images).flatten(1).all(1)
    mirrored = (out == images.flip(-1)).flatten(1).all(1)
    assert (same ^ mirrored).all()
    assert 0 < int(mirrored.sum()) < 64


def test_constant_image_keeps_unpadded_region_and_zero_pads():
    """Default padding 4 (12 x 12 images to keep it fast): the content is a rectangle of the constant,
    the rest is 0; the zero border is on one side per axis, at most 4 wide; all 9 x 9 shifts occur
    about equally often."""
    batch, size, padding, value = 8100, 12, 4, 3.5
    images = torch.full((batch, 1, size, size), value)
    out = random_crop_flip(images, _generator(3))
    assert ((out == 0) | (out == value)).all()
    rows, cols = (out != 0).any(dim=3)[:, 0], (out != 0).any(dim=2)[:, 0]  # (B, H), (B, W)
    top, bottom = rows.int().argmax(1), rows.flip(1).int().argmax(1)
    left, right = cols.int().argmax(1), cols.flip(1).int().argmax(1)
    assert ((top == 0) | (bottom == 0)).all() and ((left == 0) | (right == 0)).all()
    assert (top + bottom).max() <= padding and (left + right).max() <= padding
    # Inside the rectangle everything is the constant: the count of kept pixels is its area.
    kept = (out != 0).sum(dim=(1, 2, 3))
    assert torch.equal(kept, (size - top - bottom) * (size - left - right))
    shift = (top - bottom + padding) * (2 * padding + 1) + (left - right + padding)  # 0..80
    frequencies = torch.bincount(shift, minlength=81).double() / batch
    assert frequencies.min() > 0.5 / 81 and frequencies.max() < 1.5 / 81
    for marginal in ((top - bottom + padding), (left - right + padding)):
        torch.testing.assert_close(
            torch.bincount(marginal, minlength=9).double() / batch, torch.full((9,), 1 / 9, dtype=torch.float64),
            atol=0.02, rtol=0,
        )


def test_flip_rate_and_offsets_are_uniform():
    batch, size, padding = 10_000, 8, 2
    base = torch.arange(1.0, size * size + 1).reshape(1, size, size)  # distinct values: every crop differs
    candidates = _candidates(base, padding)
    table = torch.stack([crop.flatten() for *_, crop in candidates])  # (50, 64)
    out = random_crop_flip(base.expand(batch, 1, size, size), _generator(4), padding=padding)
    matches = (out.flatten(1)[:, None, :] == table[None]).all(dim=2)  # (B, 50)
    assert torch.equal(matches.sum(1), torch.ones(batch, dtype=torch.int64))
    which = matches.int().argmax(1)
    flipped = torch.tensor([f for _, _, f, _ in candidates])[which]
    assert abs(flipped.double().mean().item() - 0.5) < 0.03
    offset = torch.tensor([dy * (2 * padding + 1) + dx for dy, dx, _, _ in candidates])[which]
    frequencies = torch.bincount(offset, minlength=25).double() / batch
    torch.testing.assert_close(frequencies, torch.full((25,), 1 / 25, dtype=torch.float64), atol=0.012, rtol=0)


def test_same_seed_same_output_other_seed_other_output():
    images = _random_images()
    first = random_crop_flip(images, _generator(7))
    assert torch.equal(first, random_crop_flip(images, _generator(7)))
    assert not torch.equal(first, random_crop_flip(images, _generator(8)))


def test_generator_advances_between_calls():
    images, generator = _random_images(), _generator(9)
    state = generator.get_state()
    first, second = random_crop_flip(images, generator), random_crop_flip(images, generator)
    assert not torch.equal(first, second)
    assert not torch.equal(generator.get_state(), state)


def test_input_is_not_modified():
    images = _random_images()
    before = images.clone()
    random_crop_flip(images, _generator(10))
    assert torch.equal(images, before)


def test_channels_last_input_gives_the_same_result():
    images = _random_images()
    channels_last = images.contiguous(memory_format=torch.channels_last)
    out = random_crop_flip(channels_last, _generator(11))
    assert torch.equal(out, random_crop_flip(images, _generator(11)))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(channels_last, images)


def test_non_contiguous_input():
    images = _random_images(batch=32)
    strided = images[::2]
    assert not strided.is_contiguous()
    torch.testing.assert_close(
        random_crop_flip(strided, _generator(12)), random_crop_flip(strided.contiguous(), _generator(12)), rtol=0, atol=0
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_dtype_is_kept(dtype):
    images = _random_images().to(dtype)
    out = random_crop_flip(images, _generator(13))
    assert out.dtype == dtype
    _assert_every_output_is_a_crop(images, out, 4)


def test_invalid_arguments():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        random_crop_flip(torch.zeros(3, 8, 8), _generator(0))
    with pytest.raises(ValueError, match="padding"):
        random_crop_flip(torch.zeros(2, 3, 8, 8), _generator(0), padding=-1)


def test_registry():
    assert get_augmentation("none") is None
    assert get_augmentation("crop_flip") is random_crop_flip
    assert set(AUGMENTATIONS) == {"none", "crop_flip"}
    with pytest.raises(ValueError, match="Known augmentations: crop_flip, none"):
        get_augmentation("cutout")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_crops_without_host_sync():
    images = _random_images().cuda()
    generator = _generator(14, "cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = random_crop_flip(images, generator)
        again = random_crop_flip(images, _generator(14, "cuda"))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.device == images.device
    assert torch.equal(out, again)
    _assert_every_output_is_a_crop(images, out, 4)
    with pytest.raises(ValueError, match="generator"):
        random_crop_flip(images, _generator(0, "cpu"))
