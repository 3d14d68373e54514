"""The fused masked step: MaskParts + MaskedWeight give the values and gradients of W * mask(),
and the band-searched top-k gives the mask of a full selection."""

import pytest
import torch

from supermask_pipeline.masks import (
    MASK_STRATEGIES,
    BAND_SELECTION_MIN,
    MaskedWeight,
    ThresholdHint,
    get_mask_strategy,
    top_k_mask,
)
from supermask_pipeline.masks.strategies import indicator, signed_threshold_mask

OPTIONS = {"signed_supermask": {"threshold": 0.3}, "edge_popup": {"keep_fraction": 0.4}}


@pytest.mark.parametrize("name", sorted(set(MASK_STRATEGIES) - {"dense"}))
@pytest.mark.parametrize("sampled", [False, True])
def test_masked_weight_equals_autograd_through_the_mask(name, sampled):
    strategy = get_mask_strategy(name, **OPTIONS.get(name, {}))
    g = torch.Generator().manual_seed(3)
    shape = (130, 140)  # above BAND_SELECTION_MIN: edge-popup takes its band path
    weight = torch.randn(shape, generator=g).requires_grad_(strategy.trains_weights)
    raw = (torch.rand(shape, generator=g) < 0.5).float() if name == "fixed_mask" else torch.randn(shape, generator=g)
    upstream = torch.randn(shape, generator=g)
    results = []
    for fused in (False, True):
        scores = raw.clone().requires_grad_(strategy.trains_scores)
        weight.grad = None
        state = strategy.setup(scores)
        generator = torch.Generator().manual_seed(7) if sampled else None
        if fused:
            parts = strategy.parts(scores, state, generator)
            effective = MaskedWeight.apply(weight, scores, parts.hard, parts.surrogate)
        else:
            mask = strategy.sample(scores, state, generator) if sampled else strategy.mask(scores, state)
            effective = weight * mask
        (effective * upstream).sum().backward()
        results.append((effective.detach(), scores.grad, weight.grad))
    for reference, fused in zip(results[0], results[1]):
        assert (reference is None) == (fused is None)
        if reference is not None:
            assert torch.equal(reference, fused)


def test_indicator_is_exact_at_zero_and_for_tiny_differences():
    values = torch.tensor([-1.0, -1e-45, 0.0, 1e-45, 2.0, float("-inf"), float("inf")])
    assert indicator(values).tolist() == [0, 0, 0, 1, 1, 0, 1]
    assert indicator(values, keep_zero=True).tolist() == [0, 0, 1, 1, 1, 0, 1]
    a = torch.tensor([0.1000001, 0.1, 0.0999999])
    assert indicator(a - 0.1).tolist() == (a > 0.1).float().tolist()


def test_signed_threshold_mask_cpu_path_matches_the_definition():
    scores = torch.tensor([[-0.9, -0.4, -0.39, 0.0], [0.1, 0.4, 0.41, 1.0]])
    tau = torch.tensor(0.4)
    expected = torch.where(scores.abs() > tau, torch.sign(scores), torch.zeros_like(scores))
    assert torch.equal(signed_threshold_mask(scores, tau), expected)
    assert signed_threshold_mask(scores, tau).tolist() == [[-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]


def _stable_top_k(values, keep_fraction):
    flat = values.reshape(-1)
    k = round(keep_fraction * flat.numel())
    order = torch.sort(flat, descending=True, stable=True).indices[:k]
    out = torch.zeros_like(flat)
    out[order] = 1.0
    return out.reshape(values.shape)


def test_band_top_k_equals_a_full_selection_over_many_steps_with_ties():
    g = torch.Generator().manual_seed(0)
    n = 2 * BAND_SELECTION_MIN
    values = torch.rand(n, generator=g)
    hint = ThresholdHint()
    for step in range(40):
        if step % 7 == 3:  # heavy ties at the threshold
            values = torch.round(values * 50) / 50
        elif step == 20:  # a jump far outside the band: the fallback must still be exact
            values = values * 10
        else:
            values = (values + 1e-3 * torch.randn(n, generator=g)).abs()
        for keep in (0.5, 0.1):
            assert torch.equal(top_k_mask(values, keep, hint if keep == 0.5 else None), _stable_top_k(values, keep))
    assert hint.hits > 20 and hint.misses >= 1


def test_a_stale_hint_never_changes_the_mask():
    g = torch.Generator().manual_seed(1)
    values = torch.rand(BAND_SELECTION_MIN * 2, generator=g)
    hint = ThresholdHint()
    hint.update(0.123, hit=True)  # a hint from some other tensor
    assert torch.equal(top_k_mask(values, 0.3, hint), _stable_top_k(values, 0.3))


def test_band_top_k_on_values_of_both_signs_and_at_zero():
    g = torch.Generator().manual_seed(4)
    values = torch.randn(BAND_SELECTION_MIN * 2, generator=g)
    values[:5000] = 0.0  # ties at zero
    hint = ThresholdHint()
    for keep in (0.9, 0.5, 0.5, 0.2):
        assert torch.equal(top_k_mask(values, keep, hint), _stable_top_k(values, keep))
        magnitudes = values.abs()
        assert torch.equal(top_k_mask(magnitudes, keep, hint), _stable_top_k(magnitudes, keep))
        values = values + 1e-4 * torch.randn(values.shape, generator=g)


def test_a_move_past_the_band_is_found_in_a_wider_band_without_a_full_selection():
    g = torch.Generator().manual_seed(5)
    values = torch.rand(BAND_SELECTION_MIN * 2, generator=g)
    hint = ThresholdHint()
    top_k_mask(values, 0.5, hint)  # the first step: a full selection
    top_k_mask(values, 0.5, hint)  # an unchanged step: the band holds it
    assert (hint.hits, hint.misses, hint.full_selections) == (1, 1, 1)
    moved = values + 5 * hint.width  # the threshold moves 5 band widths: outside the band, inside the next
    assert torch.equal(top_k_mask(moved, 0.5, hint), _stable_top_k(moved, 0.5))
    assert (hint.hits, hint.misses, hint.full_selections) == (1, 2, 1)
    jumped = moved * 10  # far outside every retry: the full selection, still exact
    assert torch.equal(top_k_mask(jumped, 0.5, hint), _stable_top_k(jumped, 0.5))
    assert hint.full_selections == 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_ties_at_the_threshold_are_counted_exactly_in_every_float_dtype(dtype):
    """The band search's count of entries ≥ the k-th value decides whether the ties need the
    running count; in float16 (sums exact only to 2048) a wrong count would keep too many."""
    g = torch.Generator().manual_seed(6)
    magnitudes = torch.randn(BAND_SELECTION_MIN * 2, generator=g).abs()
    hint = ThresholdHint()
    for step in range(6):
        values = magnitudes.to(dtype)
        k = values.numel() // 2
        kth = values.sort(descending=True).values[k - 1]
        values[:5] = kth  # ties at the k-th value: k + 4 or so entries ≥ it, 16,388 rounds to k in float16
        mask = top_k_mask(values, 0.5, hint)
        assert mask.dtype == dtype and int(mask.double().sum()) == k
        assert torch.equal(mask, _stable_top_k(values, 0.5))
        magnitudes = (magnitudes + 1e-3 * torch.randn(magnitudes.shape, generator=g)).abs()
    assert hint.hits >= 3  # the band path ran (and its count was used)
