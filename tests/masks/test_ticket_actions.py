import math

import pytest
import torch

from supermask_pipeline.masks import (
    MASK_0_ACTIONS,
    MASK_1_ACTIONS,
    Mask0Result,
    get_mask_0_action,
    get_mask_1_action,
    ticket_start,
)

# Eighths: exact in binary floating point.
W_INIT = torch.tensor([[4.0, -1.0, 3.0], [-7.0, 2.0, -5.0]]) / 8
W_FINAL = torch.tensor([[6.0, -2.0, -1.0], [-3.0, 7.0, 4.0]]) / 8
# |w_i| 4 1 3 7 2 5, |w_f| 6 2 1 3 7 4: magnitude decreased at flat indices 2, 3, 5.
MASK = torch.tensor([[1, 0, 1], [1, 1, 0]], dtype=torch.int8)  # kept 0, 2, 3, 4; pruned 1, 5
KEPT = MASK.bool()

# np.std of the whole layer (population): mean −4/48, written out by hand.
_VALUES = [4 / 8, -1 / 8, 3 / 8, -7 / 8, 2 / 8, -5 / 8]
_MEAN = sum(_VALUES) / 6
SIGMA = math.sqrt(sum((v - _MEAN) ** 2 for v in _VALUES) / 6)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _big(seed: int = 1):
    g = _gen(seed)
    w_i = torch.randn(10, 12, generator=g)
    mask = (torch.rand(10, 12, generator=g) < 0.5).to(torch.int8)
    return w_i, torch.randn(10, 12, generator=g), mask


def test_action_tables_hold_the_papers_actions():
    assert set(MASK_1_ACTIONS) == {
        "none",
        "random_reinit",
        "random_reshuffle",
        "signed_reinit",
        "signed_reshuffle",
        "signed_constant",
        "rand_signed_constant",
    }
    assert set(MASK_0_ACTIONS) == {"mask", "freeze_init", "freeze_init_zero_mask", "freeze_init_zero_all"}


def test_none_rewinds_kept_weights_to_their_initial_values():
    out = get_mask_1_action("none")(W_INIT, W_FINAL, MASK, None)
    assert torch.equal(out, torch.tensor([[4.0, 0.0, 3.0], [-7.0, 2.0, 0.0]]) / 8)


@pytest.mark.parametrize("name", ["random_reinit", "signed_reinit"])
def test_reinit_draws_kept_values_from_the_layers_initial_values(name):
    w_i, w_f, mask = _big()
    out = get_mask_1_action(name)(w_i, w_f, mask, _gen(3))
    assert bool((out[~mask.bool()] == 0).all())
    kept = out[mask.bool()]
    pool = w_i.reshape(-1) if name == "random_reinit" else w_i.abs().reshape(-1)
    magnitudes = kept if name == "random_reinit" else kept.abs()
    # drawn without replacement: every kept value is a distinct entry of the layer's pool
    assert all(bool((pool == v).any()) for v in magnitudes)
    assert len(set(magnitudes.tolist())) == magnitudes.numel()
    assert not torch.equal(kept, w_i[mask.bool()])
    if name == "signed_reinit":
        assert torch.equal(torch.sign(kept), torch.sign(w_i[mask.bool()]))
    assert torch.equal(out, get_mask_1_action(name)(w_i, w_f, mask, _gen(3)))


def test_random_reshuffle_permutes_the_kept_initial_values():
    out = get_mask_1_action("random_reshuffle")(W_INIT, W_FINAL, MASK, _gen(0))
    assert sorted(out[KEPT].tolist()) == sorted(W_INIT[KEPT].tolist())
    assert out[~KEPT].tolist() == [0.0, 0.0]
    w_i, w_f, mask = _big()
    big = get_mask_1_action("random_reshuffle")(w_i, w_f, mask, _gen(0))
    assert sorted(big[mask.bool()].tolist()) == sorted(w_i[mask.bool()].tolist())
    assert not torch.equal(big, w_i * mask)


def test_signed_reshuffle_permutes_magnitudes_and_keeps_each_sign():
    out = get_mask_1_action("signed_reshuffle")(W_INIT, W_FINAL, MASK, _gen(0))
    assert torch.equal(torch.sign(out[KEPT]), torch.sign(W_INIT[KEPT]))
    assert sorted(out[KEPT].abs().tolist()) == sorted(W_INIT[KEPT].abs().tolist())
    assert out[~KEPT].abs().tolist() == [0.0, 0.0]
    w_i, w_f, mask = _big()
    big = get_mask_1_action("signed_reshuffle")(w_i, w_f, mask, _gen(0))
    kept = mask.bool()
    assert torch.equal(torch.sign(big[kept]), torch.sign(w_i[kept]))
    assert sorted(big[kept].abs().tolist()) == sorted(w_i[kept].abs().tolist())
    assert not torch.equal(big[kept], w_i[kept])


def test_signed_constant_is_the_initial_sign_times_the_layer_std():
    out = get_mask_1_action("signed_constant")(W_INIT, W_FINAL, MASK, None)
    expected = torch.tensor([[SIGMA, 0.0, SIGMA], [-SIGMA, SIGMA, 0.0]])
    assert torch.allclose(out, expected, atol=1e-7, rtol=0)
    fixed = get_mask_1_action("signed_constant")(W_INIT, W_FINAL, MASK, None, constant=0.25)
    assert fixed.tolist() == [[0.25, 0.0, 0.25], [-0.25, 0.25, 0.0]]


def test_rand_signed_constant_is_plus_minus_std_with_permuted_signs():
    out = get_mask_1_action("rand_signed_constant")(W_INIT, W_FINAL, torch.ones_like(MASK), _gen(0))
    assert torch.allclose(out.abs(), torch.full_like(out, SIGMA), atol=1e-7, rtol=0)
    assert int((out > 0).sum()) == int((W_INIT > 0).sum())  # the layer's signs, permuted
    partial = get_mask_1_action("rand_signed_constant")(W_INIT, W_FINAL, MASK, _gen(0))
    assert partial[~KEPT].tolist() == [0.0, 0.0]
    w_i, w_f, mask = _big()
    big = get_mask_1_action("rand_signed_constant")(w_i, w_f, mask, _gen(0))
    assert not torch.equal(torch.sign(big[mask.bool()]), torch.sign(w_i[mask.bool()]))
    assert torch.equal(big, get_mask_1_action("rand_signed_constant")(w_i, w_f, mask, _gen(0)))


@pytest.mark.parametrize(
    "name", ["random_reinit", "random_reshuffle", "signed_reinit", "signed_reshuffle", "rand_signed_constant"]
)
def test_random_actions_need_a_generator(name):
    with pytest.raises(ValueError, match="Generator"):
        get_mask_1_action(name)(W_INIT, W_FINAL, MASK, None)


def test_mask_0_mask_zeroes_and_freezes_pruned_weights():
    result = get_mask_0_action("mask")(W_INIT, W_FINAL, MASK, None)
    assert isinstance(result, Mask0Result)
    assert result.values.tolist() == [[0.0] * 3, [0.0] * 3]
    assert torch.equal(result.trainable_mask, KEPT)
    assert not bool(result.zero_kept.any())


def test_mask_0_freeze_init_freezes_pruned_weights_at_init():
    result = get_mask_0_action("freeze_init")(W_INIT, W_FINAL, MASK, None)
    assert torch.equal(result.values, torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, -5.0]]) / 8)
    assert torch.equal(result.trainable_mask, KEPT)
    assert not bool(result.zero_kept.any())


def test_mask_0_freeze_init_zero_mask_zeroes_pruned_weights_that_shrank():
    result = get_mask_0_action("freeze_init_zero_mask")(W_INIT, W_FINAL, MASK, None)
    # pruned 1: |w| 1 → 2 grew, frozen at w_i; pruned 5: 5 → 4 shrank, 0.
    assert torch.equal(result.values, torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, 0.0]]) / 8)
    assert torch.equal(result.trainable_mask, KEPT)
    assert not bool(result.zero_kept.any())


def test_mask_0_freeze_init_zero_all_also_zeroes_kept_weights_that_shrank():
    result = get_mask_0_action("freeze_init_zero_all")(W_INIT, W_FINAL, MASK, None)
    assert torch.equal(result.values, torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, 0.0]]) / 8)
    assert result.zero_kept.tolist() == [[False, False, True], [True, False, False]]
    assert torch.equal(result.trainable_mask, KEPT)


def test_ticket_start_combines_both_actions():
    start, trainable = ticket_start(W_INIT, W_FINAL, MASK, "none", "freeze_init_zero_all")
    assert torch.equal(start, torch.tensor([[4.0, -1.0, 0.0], [0.0, 2.0, 0.0]]) / 8)
    assert torch.equal(trainable, KEPT)
    start, _ = ticket_start(W_INIT, W_FINAL, MASK, "signed_constant", "freeze_init")
    expected = torch.tensor([[SIGMA, -1 / 8, SIGMA], [-SIGMA, SIGMA, -5 / 8]])
    assert torch.allclose(start, expected, atol=1e-7, rtol=0)
    start, _ = ticket_start(W_INIT, W_FINAL, MASK)
    assert torch.equal(start, W_INIT * MASK)


def test_no_action_changes_its_inputs():
    w_i, w_f, mask = W_INIT.clone(), W_FINAL.clone(), MASK.clone()
    for name in MASK_1_ACTIONS:
        get_mask_1_action(name)(w_i, w_f, mask, _gen(0))
    for name in MASK_0_ACTIONS:
        get_mask_0_action(name)(w_i, w_f, mask, _gen(0))
        ticket_start(w_i, w_f, mask, "random_reshuffle", name, _gen(0))
    assert torch.equal(w_i, W_INIT) and torch.equal(w_f, W_FINAL) and torch.equal(mask, MASK)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="none, rand_signed_constant"):
        get_mask_1_action("rewind")
    with pytest.raises(ValueError, match="freeze_init, freeze_init_zero_all"):
        get_mask_0_action("zero")
    with pytest.raises(ValueError, match="shape"):
        get_mask_1_action("none")(W_INIT, W_FINAL.T, MASK, None)
    with pytest.raises(ValueError, match="shape"):
        get_mask_0_action("mask")(W_INIT, W_FINAL, MASK.T, None)
    with pytest.raises(ValueError, match="0 and 1"):
        get_mask_0_action("mask")(W_INIT, W_FINAL, MASK * 2, None)
