"""The stochastic masks' uniforms (``uniform_like``) and their comparisons: torch.rand's values
and generator positions, bit for bit, and the masks of the formulas of METHODS.md."""

import pytest
import torch

from supermask_pipeline.masks import ASLPStrategy, BernoulliStrategy
from supermask_pipeline.masks.strategies import below, indicator
from supermask_pipeline.masks.uniforms import uniform_like


@pytest.mark.parametrize("shape", [(300, 784), (257, 257), (1 << 16,), (100, 300), (10, 100), (7,), (3, 5), (1,), (0,),
                                   (64, 3, 3, 3)])
def test_uniform_like_gives_torch_rand_values_and_leaves_the_generator_where_rand_does(shape):
    reference, fast = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    for _ in range(3):  # consecutive draws stay in step (odd sizes take one 32-bit draw at the end)
        expected = torch.rand(shape, generator=reference)
        drawn = uniform_like(torch.empty(shape), fast)
        assert drawn.shape == expected.shape and drawn.dtype == torch.float32
        assert torch.equal(drawn, expected)
    assert torch.equal(fast.get_state(), reference.get_state())


def test_uniform_like_falls_back_to_torch_rand_for_other_dtypes():
    reference, fast = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    expected = torch.rand((5, 4), generator=reference, dtype=torch.float64)
    assert torch.equal(uniform_like(torch.empty(5, 4, dtype=torch.float64), fast), expected)


def test_uniform_like_values_are_24_bit_uniforms_on_zero_one():
    drawn = uniform_like(torch.empty(200_000), torch.Generator().manual_seed(0))
    assert 0.0 <= drawn.min() and drawn.max() < 1.0
    assert torch.equal(drawn * 2**24, torch.floor(drawn * 2**24))  # multiples of 2⁻²⁴
    assert abs(drawn.mean().item() - 0.5) < 0.003 and abs(drawn.var().item() - 1 / 12) < 0.001


def test_below_and_indicator_equal_the_comparisons_they_replace_at_every_boundary():
    probability = torch.tensor([0.0, 0.25, 0.25, 0.25, 1e-45, 0.5, float("nan")])
    uniform = torch.tensor([0.0, 0.25, 0.2499999, 0.2500001, 0.0, 0.75, 0.1])
    assert below(uniform, probability).tolist() == [0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    generator = torch.Generator().manual_seed(5)
    soft, u = torch.rand(10_000, generator=generator), torch.rand(10_000, generator=generator)
    u[:100] = soft[:100]  # ties are pruned
    assert torch.equal(below(u, soft), (u < soft).float())
    assert torch.equal(indicator(soft - u), (soft - u > 0).float())
    assert torch.equal(indicator(soft - u, keep_zero=True), (soft - u >= 0).float())
    assert indicator(torch.tensor([float("nan")])).tolist() == [0.0]


def test_bernoulli_and_aslp_samples_are_the_formulas_on_torch_rand_draws():
    scores = torch.randn(31, 17, generator=torch.Generator().manual_seed(2))
    uniform = torch.rand(scores.shape, generator=torch.Generator().manual_seed(8))
    sampled = BernoulliStrategy().sample(scores, torch.zeros(()), torch.Generator().manual_seed(8))
    assert torch.equal(sampled, (uniform < torch.sigmoid(scores)).float())
    for temperature in (1.0, 0.5):
        sampled = ASLPStrategy(temperature).sample(scores, torch.zeros(()), torch.Generator().manual_seed(8))
        noise = torch.logit(uniform, eps=torch.finfo(torch.float32).tiny)
        assert torch.equal(sampled, (scores + noise >= 0).float())


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_aslp_gradient_at_every_temperature_is_that_of_the_soft_sample(temperature):
    scores = torch.randn(50, generator=torch.Generator().manual_seed(4)).requires_grad_()
    upstream = torch.randn(50, generator=torch.Generator().manual_seed(6))
    mask = ASLPStrategy(temperature).sample(scores, torch.zeros(()), torch.Generator().manual_seed(9))
    (mask * upstream).sum().backward()
    noise = torch.logit(torch.rand(50, generator=torch.Generator().manual_seed(9)), eps=torch.finfo(torch.float32).tiny)
    soft = torch.sigmoid((scores.detach() + noise) / temperature)
    assert torch.allclose(scores.grad, upstream * soft * (1 - soft) / temperature, rtol=1e-6, atol=1e-9)
