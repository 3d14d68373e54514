import math

import pytest
import torch

from supermask_pipeline.models import get_architecture, initialise_tensors


@pytest.fixture
def fcn():
    return get_architecture("fcn")


def test_signed_constant_is_plus_minus_c_with_random_sign(fcn):
    weights = initialise_tensors(fcn, "signed_constant", seed=3)
    for name, fan_in in (("fc1", 784), ("fc2", 300), ("fc3", 100)):
        c = math.sqrt(6 / fan_in)
        w = weights[name]
        assert torch.allclose(w.abs(), torch.full_like(w, c))
        positive = (w > 0).float().mean().item()
        assert 0.4 < positive < 0.6
    scaled = initialise_tensors(fcn, "signed_constant", seed=3, scale=3.0)
    assert torch.allclose(scaled["fc1"].abs(), torch.full_like(scaled["fc1"], math.sqrt(3 / 784)))


def test_xavier_uniform_bound(fcn):
    scores = initialise_tensors(fcn, "xavier_uniform", seed=0)
    bound = math.sqrt(6 / (784 + 300))
    assert scores["fc1"].abs().max() <= bound
    assert scores["fc1"].abs().max() > 0.99 * bound
    assert abs(scores["fc1"].mean().item()) < 0.01 * bound


def test_elu_uniform_and_kaiming_normal_scale(fcn):
    w = initialise_tensors(fcn, "elu_uniform", seed=0)["fc1"]
    assert w.abs().max() <= math.sqrt(4.5 / 784)
    k = initialise_tensors(fcn, "kaiming_normal", seed=0)["fc1"]
    assert k.std().item() == pytest.approx(math.sqrt(2 / 784), rel=0.02)


def test_same_seed_same_tensors_other_seed_other_tensors(fcn):
    a = initialise_tensors(fcn, "xavier_uniform", seed=7)
    b = initialise_tensors(fcn, "xavier_uniform", seed=7)
    c = initialise_tensors(fcn, "xavier_uniform", seed=8)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["fc1"], c["fc1"])


def test_unknown_initialiser_and_bad_scale(fcn):
    with pytest.raises(ValueError, match="signed_constant"):
        initialise_tensors(fcn, "orthogonal", seed=0)
    with pytest.raises(ValueError, match="positive"):
        initialise_tensors(fcn, "signed_constant", seed=0, scale=-1.0)
