import pytest
import torch

from supermask_pipeline.masks import (
    CRITERIA,
    criterion_mask,
    criterion_masks,
    get_criterion,
    keep_count,
    layer_prune_rate,
    remaining_fraction,
)
from supermask_pipeline.models.architectures import get_architecture, layer_specs

# Eighths are exact in binary floating point, so the hand-computed scores below are exact.
W_INIT = torch.tensor([[4.0, -1.0, 3.0], [-7.0, 2.0, -5.0]], dtype=torch.float64) / 8
W_FINAL = torch.tensor([[6.0, -2.0, -1.0], [-3.0, 7.0, 4.0]], dtype=torch.float64) / 8
# flat index:              0     1     2      3     4     5
# |w_i|  4 1 3 7 2 5        |w_f|  6 2 1 3 7 4        signs flip at 2 and 5
# |w_f|-|w_i|  2 1 -2 -4 5 -1      |w_f-w_i|  2 1 4 4 5 9   (tie at 2 and 3)

EXPECTED_KEEP_3 = {
    "large_final": [[1, 0, 0], [0, 1, 1]],  # |w_f| 7, 6, 4
    "small_final": [[0, 1, 1], [1, 0, 0]],  # |w_f| 1, 2, 3
    "large_init": [[1, 0, 0], [1, 0, 1]],  # |w_i| 7, 5, 4
    "small_init": [[0, 1, 1], [0, 1, 0]],  # |w_i| 1, 2, 3
    "magnitude_increase": [[1, 1, 0], [0, 1, 0]],  # 5, 2, 1
    "movement": [[0, 0, 1], [0, 1, 1]],  # 9, 5, then the tie 4 = 4 goes to flat index 2
    # top-4 |w_i| {3,5,0,2} ∩ top-4 |w_f| {4,0,5,3} = {0,3,5}: exactly 3.
    "large_init_large_final": [[1, 0, 0], [1, 0, 1]],
    # bottom-4 ∩ bottom-4 = {1,2}, bottom-5 ∩ bottom-5 = {0,1,2,5}: the count jumps from
    # 2 to 4, and of the two weights entering together the lower flat index (0) is kept.
    "small_init_small_final": [[1, 1, 1], [0, 0, 0]],
}


def _to_list(mask: torch.Tensor) -> list:
    return mask.tolist()


@pytest.mark.parametrize("criterion", sorted(EXPECTED_KEEP_3))
def test_every_criterion_keeps_the_hand_computed_set(criterion):
    mask = criterion_mask(criterion, W_INIT, W_FINAL, 0.5)
    assert mask.dtype == torch.int8
    assert mask.shape == W_INIT.shape
    assert _to_list(mask) == EXPECTED_KEEP_3[criterion]


def test_criterion_table_holds_exactly_the_papers_criteria():
    assert set(CRITERIA) == set(EXPECTED_KEEP_3) | {"random"}


def test_score_functions_match_the_methods_formulas():
    g = torch.Generator().manual_seed(0)
    assert torch.equal(CRITERIA["large_final"](W_INIT, W_FINAL, g), W_FINAL.abs())
    assert torch.equal(CRITERIA["small_final"](W_INIT, W_FINAL, g), -W_FINAL.abs())
    assert torch.equal(CRITERIA["large_init"](W_INIT, W_FINAL, g), W_INIT.abs())
    assert torch.equal(CRITERIA["small_init"](W_INIT, W_FINAL, g), -W_INIT.abs())
    assert torch.equal(CRITERIA["magnitude_increase"](W_INIT, W_FINAL, g), W_FINAL.abs() - W_INIT.abs())
    assert torch.equal(CRITERIA["movement"](W_INIT, W_FINAL, g), (W_FINAL - W_INIT).abs())
    random_scores = CRITERIA["random"](W_INIT, W_FINAL, g)
    assert random_scores.shape == W_INIT.shape
    assert sorted(random_scores.reshape(-1).tolist()) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_large_init_large_final_is_a_common_percentile_at_every_count():
    torch.manual_seed(3)
    w_i, w_f = torch.randn(7, 9), torch.randn(7, 9)
    n = w_i.numel()
    rank_i = torch.argsort(torch.argsort(w_i.abs().reshape(-1), descending=True))
    rank_f = torch.argsort(torch.argsort(w_f.abs().reshape(-1), descending=True))
    worst = torch.maximum(rank_i, rank_f)
    for k in range(n + 1):
        mask = criterion_mask("large_init_large_final", w_i, w_f, k / n).reshape(-1).bool()
        assert int(mask.sum()) == k
        # The kept set is {max(rank_i, rank_f) < q - 1} plus ties at q - 1: a common top-q cut.
        if k:
            q = int(worst[mask].max()) + 1
            assert bool((worst[mask] < q).all())
            assert int((worst < q - 1).sum()) <= k <= int((worst < q).sum())


def test_same_sign_ranks_only_unflipped_weights_and_keeps_the_count():
    mask = criterion_mask("large_final", W_INIT, W_FINAL, 0.5, same_sign=True)
    # flipped 2 and 5 are out; of {0,1,3,4} with |w_f| 6 2 3 7 the top 3 are 4, 0, 3.
    assert _to_list(mask) == [[1, 0, 0], [1, 1, 0]]
    small = criterion_mask("small_final", W_INIT, W_FINAL, 0.5, same_sign=True)
    assert _to_list(small) == [[1, 1, 0], [1, 0, 0]]  # |w_f| 2, 3, 6 among {0,1,3,4}


def test_same_sign_keeps_all_unflipped_weights_when_fewer_than_the_count():
    mask = criterion_mask("large_final", W_INIT, W_FINAL, 1.0, same_sign=True)
    assert _to_list(mask) == [[1, 1, 0], [1, 1, 0]]


def test_ties_go_to_the_lower_flat_index():
    w = torch.ones(2, 3)
    assert _to_list(criterion_mask("large_final", w, w, 0.5)) == [[1, 1, 1], [0, 0, 0]]


def test_random_criterion_is_reproducible_per_seed_and_exact_in_count():
    w_i, w_f = torch.zeros(20, 30), torch.zeros(20, 30)

    def draw(seed):
        return criterion_mask("random", w_i, w_f, 0.25, torch.Generator().manual_seed(seed))

    assert torch.equal(draw(7), draw(7))
    assert not torch.equal(draw(7), draw(8))
    assert int(draw(7).sum()) == 150
    with pytest.raises(ValueError, match="Generator"):
        criterion_mask("random", w_i, w_f, 0.25)


def test_keep_count_rounds_the_fraction_of_the_layer():
    assert keep_count(0.5, 6) == 3
    assert keep_count(0.0, 6) == 0
    assert keep_count(1.0, 6) == 6
    assert keep_count(0.8**5, 235200) == round(235200 * 0.8**5) == 77070


def test_remaining_fraction_compounds():
    assert remaining_fraction(0.2, 0) == 1.0
    assert remaining_fraction(0.2, 1) == pytest.approx(0.8)
    assert remaining_fraction(0.2, 5) == pytest.approx(0.8**5)
    assert remaining_fraction(0.1, 24) == pytest.approx(0.9**24)
    for bad in [(-0.1, 1), (1.5, 1), (0.2, -1), (0.2, 1.5)]:
        with pytest.raises(ValueError):
            remaining_fraction(*bad)


def test_layer_prune_rates_per_architecture():
    fcn = {layer.name: layer for layer in layer_specs(get_architecture("fcn"))}
    assert layer_prune_rate(fcn["fc1"], "fcn") == 0.2
    assert layer_prune_rate(fcn["fc2"], "fcn") == 0.2
    assert layer_prune_rate(fcn["fc3"], "fcn") == 0.1
    conv6 = {layer.name: layer for layer in layer_specs(get_architecture("conv6"))}
    assert [layer_prune_rate(conv6[f"conv{i}"], "conv6") for i in range(1, 7)] == [0.15] * 6
    assert layer_prune_rate(conv6["fc1"], "conv6") == 0.2
    assert layer_prune_rate(conv6["fc3"], "conv6") == 0.1
    conv4 = {layer.name: layer for layer in layer_specs(get_architecture("conv4"))}
    assert layer_prune_rate(conv4["conv1"], "conv4") == 0.1
    assert layer_prune_rate(conv6["conv1"], "conv6", {"conv": 0.3}) == 0.3
    assert layer_prune_rate(fcn["fc3"], "fcn", {"fc": 0.5}) == 0.1
    assert layer_prune_rate(fcn["fc3"], "fcn", {"output": 0.05}) == 0.05


def test_bad_prune_rates_raise_with_the_choices():
    fc1 = layer_specs(get_architecture("fcn"))[0]
    with pytest.raises(ValueError, match="conv, fc, output"):
        layer_prune_rate(fc1, "fcn", {"dense": 0.2})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        layer_prune_rate(fc1, "fcn", {"fc": 1.2})
    with pytest.raises(ValueError, match="conv6"):
        layer_prune_rate(fc1, "lenet")


@pytest.fixture(scope="module")
def fcn_weights():
    g = torch.Generator().manual_seed(0)
    layers = layer_specs(get_architecture("fcn"))
    initial = {layer.name: torch.randn(layer.weight_shape, generator=g) for layer in layers}
    final = {layer.name: torch.randn(layer.weight_shape, generator=g) for layer in layers}
    return initial, final


@pytest.mark.parametrize("step", [0, 1, 5])
@pytest.mark.parametrize("criterion", ["large_final", "random", "large_init_large_final"])
def test_fcn_keeps_the_compounded_count_per_layer(fcn_weights, criterion, step):
    initial, final = fcn_weights
    masks = criterion_masks(criterion, initial, final, get_architecture("fcn"), step)
    assert list(masks) == ["fc1", "fc2", "fc3"]
    counts = {name: int(mask.sum()) for name, mask in masks.items()}
    assert counts == {
        "fc1": round(300 * 784 * 0.8**step),
        "fc2": round(100 * 300 * 0.8**step),
        "fc3": round(10 * 100 * 0.9**step),
    }
    assert masks["fc1"].shape == (300, 784) and masks["fc1"].dtype == torch.int8


def test_conv6_convolutions_prune_15_percent_per_round():
    spec = get_architecture("conv6")
    initial = {layer.name: torch.ones(layer.weight_shape) for layer in layer_specs(spec)}
    masks = criterion_masks("large_final", initial, initial, spec, 2)
    for layer in layer_specs(spec):
        base = 0.1 if layer.is_output else 0.2 if layer.kind == "fc" else 0.15
        assert int(masks[layer.name].sum()) == round(layer.num_weights * (1 - base) ** 2), layer.name


def test_random_masks_of_an_architecture_are_reproducible_per_seed(fcn_weights):
    initial, final = fcn_weights
    spec = get_architecture("fcn")
    first = criterion_masks("random", initial, final, spec, 3, seed=5)
    again = criterion_masks("random", initial, final, spec, 3, seed=5)
    other = criterion_masks("random", initial, final, spec, 3, seed=6)
    assert all(torch.equal(first[n], again[n]) for n in first)
    assert not torch.equal(first["fc1"], other["fc1"])


def test_rates_override_reaches_every_layer(fcn_weights):
    initial, final = fcn_weights
    masks = criterion_masks("large_final", initial, final, get_architecture("fcn"), 2, rates={"fc": 0.5})
    assert int(masks["fc1"].sum()) == round(235200 * 0.25)
    assert int(masks["fc3"].sum()) == round(1000 * 0.81)


def test_only_the_given_weight_tensors_are_read_and_none_is_changed(fcn_weights):
    initial, final = fcn_weights
    initial = dict(initial, **{"fc1.bias": torch.zeros(300)})
    before = {name: t.clone() for name, t in initial.items()}
    before_final = {name: t.clone() for name, t in final.items()}
    masks = criterion_masks("magnitude_increase", initial, final, get_architecture("fcn"), 1)
    assert set(masks) == {"fc1", "fc2", "fc3"}
    assert all(torch.equal(initial[n], before[n]) for n in before)
    assert all(torch.equal(final[n], before_final[n]) for n in before_final)
    w_i, w_f = W_INIT.clone(), W_FINAL.clone()
    for criterion in CRITERIA:
        criterion_mask(criterion, w_i, w_f, 0.5, torch.Generator().manual_seed(0), same_sign=True)
    assert torch.equal(w_i, W_INIT) and torch.equal(w_f, W_FINAL)


def test_missing_or_misshaped_layers_raise(fcn_weights):
    initial, final = fcn_weights
    spec = get_architecture("fcn")
    with pytest.raises(ValueError, match="fc2"):
        criterion_masks("large_final", {"fc1": initial["fc1"]}, final, spec, 1)
    with pytest.raises(ValueError, match="shape"):
        criterion_masks("large_final", dict(initial, fc3=torch.zeros(100, 10)), final, spec, 1)


def test_previous_mask_only_removes_weights():
    previous = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.int8)
    mask = criterion_mask("large_final", W_INIT, W_FINAL, 0.5, previous_mask=previous)
    # index 2 stays pruned; of {0,1,3,4,5} with |w_f| 6 2 3 7 4 the top 3 are 4, 0, 5.
    assert _to_list(mask) == [[1, 0, 0], [0, 1, 1]]
    assert bool((mask <= previous).all())
    with pytest.raises(ValueError, match="only remove"):
        criterion_mask("large_final", W_INIT, W_FINAL, 1.0, previous_mask=previous)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="large_final, large_init"):
        get_criterion("largest")
    with pytest.raises(ValueError, match="Unknown criterion"):
        criterion_mask("largest", W_INIT, W_FINAL, 0.5)
    for bad in (-0.1, 1.1):
        with pytest.raises(ValueError, match="keep_fraction"):
            criterion_mask("large_final", W_INIT, W_FINAL, bad)
    with pytest.raises(ValueError, match="shape"):
        criterion_mask("large_final", W_INIT, W_FINAL.T, 0.5)
    with pytest.raises(ValueError, match="NaN"):
        criterion_mask("large_final", W_INIT, torch.full_like(W_FINAL, float("nan")), 0.5)
