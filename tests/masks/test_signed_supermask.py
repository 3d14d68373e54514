import pytest
import torch

from supermask_pipeline.masks import (
    SignedSupermaskStrategy,
    get_mask_strategy,
    remaining_weights_table,
)


def test_signed_mask_on_a_hand_checked_tensor():
    scores = torch.tensor([[-0.9, -0.4, -0.39, 0.0], [0.1, 0.4, 0.41, 1.0]])
    tau = torch.tensor(0.4)
    mask = SignedSupermaskStrategy(0.4).mask(scores, tau)
    # |M| > τ strictly: ±0.4 are pruned.
    assert mask.tolist() == [[-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]


def test_straight_through_gradient_is_identity_and_unclipped():
    scores = torch.tensor([-3.0, -0.1, 0.0, 0.2, 5.0], requires_grad=True)
    upstream = torch.tensor([1.0, -2.0, 3.0, -4.0, 5.0])
    mask = SignedSupermaskStrategy(0.4).mask(scores, torch.tensor(0.5))
    (mask * upstream).sum().backward()
    assert torch.equal(scores.grad, upstream)


def test_gradient_reaches_scores_through_the_effective_weight():
    weight = torch.tensor([2.0, -2.0, 2.0])
    scores = torch.tensor([1.0, 1.0, 0.1], requires_grad=True)
    strategy = SignedSupermaskStrategy(0.4)
    tau = strategy.setup(scores)
    assert tau.item() == pytest.approx(0.4)
    effective = weight * strategy.mask(scores, tau)
    assert effective.tolist() == [2.0, -2.0, 0.0]
    x = torch.tensor([1.0, 2.0, 3.0])
    (effective * x).sum().backward()
    # dL/dM = dL/dS = x ⊙ W
    assert scores.grad.tolist() == [2.0, -4.0, 6.0]


def test_threshold_is_fraction_of_initial_max_abs_score():
    initial = torch.tensor([[0.5, -2.5], [1.0, 0.0]])
    tau = SignedSupermaskStrategy(0.4).setup(initial)
    assert tau.item() == pytest.approx(1.0)


def test_absolute_threshold_overrides_the_factor():
    initial = torch.tensor([[0.5, -2.5], [1.0, 0.0]])
    strategy = SignedSupermaskStrategy(0.4, threshold=0.01)
    assert strategy.setup(initial).item() == pytest.approx(0.01)
    assert strategy.mask(torch.tensor([0.02, -0.005, -0.5]), strategy.setup(initial)).tolist() == [1.0, 0.0, -1.0]
    with pytest.raises(ValueError, match="threshold must be positive"):
        SignedSupermaskStrategy(0.4, threshold=0.0)


@pytest.mark.parametrize("factor", [0.0, 1.0, -0.2, 1.5])
def test_threshold_factor_outside_unit_interval_is_rejected(factor):
    with pytest.raises(ValueError, match="threshold_factor"):
        SignedSupermaskStrategy(factor)


def test_unknown_method_lists_the_choices():
    with pytest.raises(ValueError, match="dense.*signed_supermask"):
        get_mask_strategy("magic")
    with pytest.raises(ValueError, match="Bad options"):
        get_mask_strategy("signed_supermask", tau=3)


def test_remaining_weight_arithmetic():
    masks = {
        "fc1": torch.tensor([[1, 0, -1, 0], [0, 0, 1, 1]], dtype=torch.int8),
        "fc2": torch.tensor([0, 0, -1, 0], dtype=torch.int8),
    }
    table = remaining_weights_table(masks).set_index("layer")
    assert table.loc["fc1", ["num_weights", "remaining", "positive", "negative"]].tolist() == [8, 4, 3, 1]
    assert table.loc["fc1", "remaining_weights"] == pytest.approx(0.5)
    assert table.loc["fc2", "remaining_weights"] == pytest.approx(0.25)
    assert table.loc["total", ["num_weights", "remaining", "positive", "negative"]].tolist() == [12, 5, 3, 2]
    assert table.loc["total", "remaining_weights"] == pytest.approx(5 / 12)


def test_remaining_weights_rejects_non_mask_values():
    with pytest.raises(ValueError, match="fc1"):
        remaining_weights_table({"fc1": torch.tensor([0.5, 1.0])})
