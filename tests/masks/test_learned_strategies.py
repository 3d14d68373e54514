"""Learned supermasks: Bernoulli, threshold, edge-popup and ASLP, and the network options they use."""

import math

import pytest
import torch

from supermask_pipeline.masks import (
    ASLPStrategy,
    BernoulliStrategy,
    EdgePopupStrategy,
    FixedMaskStrategy,
    ThresholdStrategy,
    get_mask_strategy,
    gumbel_softmax_keep,
    top_k_mask,
)
from supermask_pipeline.models import LayerSpec, MaskedLayer, MaskedNetwork, get_architecture, initialise_tensors
from supermask_pipeline.models.network import rescale_factor, transform_weight

ZERO = torch.zeros(())


def _sigmoid_grad(scores):
    p = torch.sigmoid(scores)
    return p * (1 - p)


def _fc(out_features=2, in_features=3, name="fc1"):
    return LayerSpec(name, "fc", (out_features, in_features), in_features, out_features, True)


def _rows(logits, draws):
    """(len(logits), draws) scores whose row i holds logit i everywhere."""
    return torch.tensor(logits).view(-1, 1).expand(-1, draws).contiguous()


# --- registry -------------------------------------------------------------------------------

def test_the_four_strategies_are_registered_by_their_paper_names():
    assert isinstance(get_mask_strategy("bernoulli"), BernoulliStrategy)
    assert isinstance(get_mask_strategy("threshold"), ThresholdStrategy)
    assert get_mask_strategy("edge_popup", keep_fraction=0.3).keep_fraction == 0.3
    aslp = get_mask_strategy("aslp", temperature=0.5, learn_scale=True)
    assert (aslp.temperature, aslp.learn_scale, aslp.scale_learning_rate) == (0.5, True, 1e-3)
    assert get_mask_strategy("aslp").scale_learning_rate is None
    with pytest.raises(ValueError, match="Bad options"):
        get_mask_strategy("edge_popup", prune_rate=0.5)  # the ambiguous name is not accepted


# --- edge-popup -----------------------------------------------------------------------------

def test_edge_popup_keeps_exactly_k_with_ties_broken_by_position():
    scores = torch.tensor([[0.5, -0.5, 0.1], [0.5, 0.2, -0.9]])
    # |s| = .5 .5 .1 / .5 .2 .9; k = 3: 0.9, then the first two of the three tied 0.5s.
    mask = EdgePopupStrategy(0.5).mask(scores, ZERO)
    assert mask.tolist() == [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    ties = torch.full((10,), 0.7)
    assert top_k_mask(ties, 0.3).tolist() == [1.0] * 3 + [0.0] * 7


@pytest.mark.parametrize(
    ("numel", "keep", "expected"), [(6, 0.25, 2), (5, 0.5, 2), (7, 0.5, 4), (10, 1.0, 10), (3, 0.1, 0)]
)
def test_edge_popup_count_is_round_of_keep_fraction_times_numel(numel, keep, expected):
    scores = torch.randn(numel, generator=torch.Generator().manual_seed(numel))
    assert int(EdgePopupStrategy(keep).final_mask(scores, ZERO).sum()) == expected == round(keep * numel)


def test_edge_popup_gradient_passes_straight_to_the_magnitude():
    scores = torch.tensor([0.3, -0.8, 0.1, -0.2], requires_grad=True)
    upstream = torch.tensor([1.0, 2.0, -3.0, 4.0])
    (EdgePopupStrategy(0.5).mask(scores, ZERO) * upstream).sum().backward()
    # Identity to |s|, hence sign(s) · dL/dm on the score, kept or not.
    assert torch.equal(scores.grad, torch.sign(scores.detach()) * upstream)


@pytest.mark.parametrize("keep", [0.0, 1.5, -0.1, "half", True, float("nan")])
def test_edge_popup_rejects_a_keep_fraction_outside_zero_one(keep):
    with pytest.raises(ValueError, match=r"edge_popup.keep_fraction must be a number in \(0, 1\].*fraction"):
        EdgePopupStrategy(keep)


def test_edge_popup_keeps_the_fraction_in_every_layer_of_a_network():
    spec = get_architecture("fcn")
    network = MaskedNetwork(
        spec, EdgePopupStrategy(0.3), initialise_tensors(spec, "kaiming_normal", 0),
        initialise_tensors(spec, "kaiming_uniform", 1), activation="relu",
    )
    for name, mask in network.masks().items():
        assert int(mask.sum()) == round(0.3 * mask.numel()), name


# --- threshold ------------------------------------------------------------------------------

def test_threshold_mask_at_and_around_probability_one_half():
    scores = torch.tensor([-1.0, -1e-9, 0.0, 1e-9, 1.0])
    assert torch.sigmoid(torch.tensor(1e-9)).item() == 0.5  # why the test is computed as M > 0
    mask = ThresholdStrategy().mask(scores, ZERO)
    # σ(M) = 0.5 exactly (M = 0) is pruned; any M > 0 is kept.
    assert torch.equal(mask, torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0]))


def test_threshold_gradient_is_that_of_the_sigmoid():
    scores = torch.tensor([-2.0, 0.0, 0.7, 3.0], requires_grad=True)
    upstream = torch.tensor([1.0, -1.0, 2.0, 0.5])
    (ThresholdStrategy().mask(scores, ZERO) * upstream).sum().backward()
    assert torch.allclose(scores.grad, upstream * _sigmoid_grad(scores.detach()), rtol=0, atol=1e-7)


# --- Bernoulli ------------------------------------------------------------------------------

def test_bernoulli_samples_have_mean_sigmoid_of_the_logit():
    logits = [-2.0, -0.5, 0.0, 0.5, 2.0]
    scores = _rows(logits, 20000)
    generator = torch.Generator().manual_seed(0)
    mask = BernoulliStrategy().sample(scores, ZERO, generator)
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    # Standard error sqrt(0.25 / 20000) ≈ 0.0035.
    assert torch.allclose(mask.mean(dim=1), torch.sigmoid(torch.tensor(logits)), atol=0.015)
    assert not torch.equal(BernoulliStrategy().sample(scores, ZERO, generator), mask)


def test_bernoulli_gradient_flows_through_the_sigmoid_whatever_the_sample():
    scores = torch.tensor([-1.0, 0.0, 0.4, 2.5], requires_grad=True)
    upstream = torch.tensor([2.0, -1.0, 0.5, 3.0])
    mask = BernoulliStrategy().sample(scores, ZERO, torch.Generator().manual_seed(3))
    (mask * upstream).sum().backward()
    assert torch.allclose(scores.grad, upstream * _sigmoid_grad(scores.detach()), rtol=0, atol=1e-7)


def test_bernoulli_final_mask_is_the_half_probability_threshold():
    scores = torch.tensor([-0.3, 0.0, 1e-9, 4.0])
    assert BernoulliStrategy().final_mask(scores, ZERO).tolist() == [0.0, 0.0, 1.0, 1.0]


# --- ASLP -----------------------------------------------------------------------------------

@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_aslp_hard_samples_keep_with_probability_sigmoid_of_the_logit(temperature):
    logits = [-2.0, -0.5, 0.0, 0.5, 2.0]
    mask = ASLPStrategy(temperature).sample(_rows(logits, 20000), ZERO, torch.Generator().manual_seed(1))
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert torch.allclose(mask.mean(dim=1), torch.sigmoid(torch.tensor(logits)), atol=0.015)


def test_aslp_straight_through_gradient_is_that_of_the_soft_sample():
    logits = torch.tensor([-1.0, 0.2, 0.0, 1.5], dtype=torch.float64, requires_grad=True)
    gumbels = torch.tensor([[0.3, -0.4, 1.0, -2.0], [0.1, 0.5, 1.0, 0.3]], dtype=torch.float64)
    upstream = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    temperature = 0.7
    mask = gumbel_softmax_keep(logits, gumbels[0] - gumbels[1], temperature)
    difference = logits.detach() + gumbels[0] - gumbels[1]
    assert mask.tolist() == (difference >= 0).double().tolist() == [0.0, 0.0, 1.0, 0.0]
    (mask * upstream).sum().backward()
    soft = torch.softmax(torch.stack([logits.detach() + gumbels[0], gumbels[1]]) / temperature, dim=0)[0]
    assert torch.allclose(logits.grad, upstream * soft * (1 - soft) / temperature, rtol=1e-12)
    # The same number from central finite differences of the soft sample.
    eps = 1e-6
    soft_at = lambda d: torch.sigmoid(d / temperature)  # noqa: E731
    numeric = (soft_at(difference + eps) - soft_at(difference - eps)) / (2 * eps)
    assert torch.allclose(logits.grad, upstream * numeric, rtol=1e-6)


def test_aslp_one_logistic_draw_samples_what_two_gumbel_draws_sample():
    """The soft sample σ((m + L) / T), L = log(u / (1 − u)), has the distribution of the
    two-Gumbel softmax([m + g1, g2] / T)[0] (two-sample Kolmogorov-Smirnov distance of 200,000
    draws each; 0.0043 is its 1 % critical value), and uses one uniform per weight."""
    m, temperature, n = 0.7, 0.5, 200_000
    generator = torch.Generator().manual_seed(3)
    scores = torch.full((n,), m, dtype=torch.float64, requires_grad=True)
    mask = ASLPStrategy(temperature).sample(scores, ZERO, generator)
    assert generator.get_state().equal(_advanced(3, n))  # one U[0, 1) per weight
    upstream = torch.ones(n, dtype=torch.float64)
    (mask * upstream).sum().backward()
    # dL/dm = σ'(d/T)/T = s(1 − s)/T: solve for the soft sample s (the root on the side of the hard value).
    root = torch.sqrt((1 - 4 * scores.grad * temperature).clamp_min(0))
    logistic_soft = torch.where(mask > 0, (1 + root) / 2, (1 - root) / 2)
    gumbel = -torch.log(-torch.log(torch.rand((2, n), generator=torch.Generator().manual_seed(4), dtype=torch.float64)))
    gumbel_soft = torch.softmax(torch.stack([m + gumbel[0], gumbel[1]]) / temperature, dim=0)[0]
    a, b = torch.sort(logistic_soft).values, torch.sort(gumbel_soft).values
    grid = torch.linspace(0, 1, 2001, dtype=torch.float64)
    distance = (torch.searchsorted(a, grid) - torch.searchsorted(b, grid)).abs().max().item() / n
    assert distance < 0.0043
    assert abs(mask.mean().item() - torch.sigmoid(torch.tensor(m)).item()) < 0.004


def _advanced(seed: int, draws: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    torch.rand(draws, generator=generator, dtype=torch.float64)
    return generator.get_state()


def test_aslp_final_mask_keeps_non_negative_logits():
    assert ASLPStrategy().final_mask(torch.tensor([-0.1, 0.0, 0.3]), ZERO).tolist() == [0.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"temperature": 0.0}, "aslp.temperature"),
        ({"learn_scale": "yes"}, "aslp.learn_scale must be true or false"),
        ({"scale_learning_rate": -1e-3}, "aslp.scale_learning_rate"),
    ],
)
def test_aslp_rejects_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        ASLPStrategy(**options)


def test_aslp_learnable_scale_multiplies_the_effective_weight_and_has_its_own_learning_rate():
    spec = get_architecture("fcn")
    weights = initialise_tensors(spec, "kaiming_normal", 0)
    network = MaskedNetwork(spec, ASLPStrategy(learn_scale=True), weights, initialise_tensors(spec, "constant", 1))
    assert network.learning_rate_overrides() == {"fc1.scale": 1e-3, "fc2.scale": 1e-3, "fc3.scale": 1e-3}
    assert network.fc1.scale.requires_grad and network.fc1.scale.item() == 1.0
    with torch.no_grad():
        network.fc1.scale.fill_(2.5)
    # Logits 0 → every weight kept by the deterministic mask.
    assert torch.equal(network.effective_weights()["fc1"], weights["fc1"] * 2.5)
    assert "fc1.scale" not in dict(MaskedNetwork(spec, ASLPStrategy(), weights, weights).named_parameters())


# --- sampling in the network ----------------------------------------------------------------

def _bernoulli_network(seed=0):
    spec = get_architecture("fcn")
    return MaskedNetwork(
        spec, BernoulliStrategy(), initialise_tensors(spec, "kaiming_normal", 0),
        initialise_tensors(spec, "constant", 1), sampling_seed=seed,
    )


def test_network_samples_in_training_mode_only_unless_told_otherwise():
    network = _bernoulli_network()
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    network.train()
    assert not torch.equal(network(x), network(x))  # a new mask every forward pass
    network.eval()
    # Logits 0: the deterministic mask prunes everything, so the output is 0.
    assert torch.equal(network(x), network(x)) and torch.equal(network(x), torch.zeros(4, 10))
    with network.sampling():
        assert not torch.equal(network(x), network(x))
    network.train()
    with network.sampling(False):
        assert torch.equal(network(x), torch.zeros(4, 10))
    with network.frozen_sample() as drawn:
        assert torch.equal(network(x), network(x))  # one mask held for every pass
        assert torch.equal(network.fc1.mask(), drawn["fc1"])
    assert network.fc1.frozen_mask is None


def test_network_sampling_is_reproducible_from_its_seed():
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    outputs = [_bernoulli_network(seed)(x) for seed in (5, 5, 6)]
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.equal(outputs[0], outputs[2])
    with pytest.raises(ValueError, match="mask-sampling seed"):
        _bernoulli_network(-1)


# --- weight transforms and rescaling --------------------------------------------------------

def test_signed_constant_is_sign_times_the_layer_std():
    weight = torch.tensor([[0.5, -1.5, 2.0], [-0.25, 1.0, -3.0]])
    result = transform_weight(weight, _fc(), "signed_constant")
    c = torch.tensor(weight.double().numpy().std(), dtype=torch.float32)  # population std (ddof 0)
    assert torch.equal(torch.sign(result), torch.sign(weight))
    assert result.abs().unique().numel() == 1
    assert result.abs()[0, 0].item() == pytest.approx(c.item(), rel=1e-6)


def test_signed_kaiming_constant_is_sign_times_sqrt_two_over_fan_in():
    spec = get_architecture("fcn")
    weights = initialise_tensors(spec, "kaiming_normal", 0)
    network = MaskedNetwork(
        spec, EdgePopupStrategy(0.5), weights, initialise_tensors(spec, "kaiming_uniform", 1),
        weight_transform="signed_kaiming_constant",
    )
    for layer in network.masked_layers():
        expected = torch.sign(weights[layer.spec.name]) * torch.tensor(math.sqrt(2 / layer.spec.fan_in))
        assert torch.equal(layer.weight, expected), layer.spec.name
    with pytest.raises(ValueError, match="Unknown weight transform 'zhou'.*signed_constant, signed_kaiming_constant"):
        MaskedNetwork(spec, EdgePopupStrategy(0.5), weights, weights, weight_transform="zhou")


def test_dynamic_weight_rescaling_multiplies_by_numel_over_kept():
    weight = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    layer = MaskedLayer(_fc(), FixedMaskStrategy(), weight, mask, rescale=True)
    assert torch.equal(layer.effective_weight(), weight * mask * 2.0)  # 6 weights / 3 kept
    assert rescale_factor(torch.zeros(2, 3)).item() == 1.0  # Σm = 0: no division by zero
    empty = MaskedLayer(_fc(), FixedMaskStrategy(), weight, torch.zeros(2, 3), rescale=True)
    assert torch.equal(empty.effective_weight(), torch.zeros(2, 3))
    popup = MaskedLayer(_fc(), EdgePopupStrategy(0.5), weight, weight, rescale=True)
    assert torch.equal(popup.effective_weight(), weight * torch.tensor([[0.0, 0.0, 0.0], [2.0, 2.0, 2.0]]))


def test_constant_initialiser_takes_any_finite_value():
    spec = get_architecture("fcn")
    assert torch.equal(initialise_tensors(spec, "constant", 0)["fc2"], torch.zeros(100, 300))
    assert torch.equal(initialise_tensors(spec, "constant", 0, scale=-2.0)["fc3"], torch.full((10, 100), -2.0))
    with pytest.raises(ValueError, match="finite"):
        initialise_tensors(spec, "constant", 0, scale=float("inf"))


def test_top_k_mask_matches_a_stable_sort_on_tie_heavy_tensors():
    """The selection (kthvalue + earliest ties) keeps exactly the entries a stable descending sort keeps."""
    generator = torch.Generator().manual_seed(7)
    for trial in range(60):
        values = (
            torch.randint(0, 4, (23, 9), generator=generator).float()
            if trial % 2
            else torch.randn(11, 13, generator=generator)
        )
        for keep_fraction in (0.0, 0.04, 0.5, 0.77, 1.0):
            flat = values.reshape(-1)
            k = round(keep_fraction * flat.numel())
            expected = torch.zeros_like(flat)
            expected[torch.argsort(flat, descending=True, stable=True)[:k]] = 1.0
            assert torch.equal(top_k_mask(values, keep_fraction), expected.reshape(values.shape)), (trial, keep_fraction)
