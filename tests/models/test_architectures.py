import pytest
import torch

from supermask_pipeline.masks import DenseStrategy, SignedSupermaskStrategy
from supermask_pipeline.models import (
    ARCHITECTURES,
    MaskedNetwork,
    count_weights,
    get_architecture,
    initialise_tensors,
    layer_specs,
)

# Koster et al. (2022), Table 1 / METHODS.md: masked weights without biases.
PUBLISHED_WEIGHT_COUNTS = {
    "fcn": 266_200,
    "conv2": 4_300_992,
    "conv4": 2_425_024,
    "conv6": 2_261_184,
    "conv8": 5_275_840,
}


@pytest.mark.parametrize("name,expected", sorted(PUBLISHED_WEIGHT_COUNTS.items()))
def test_weight_counts_match_the_papers(name, expected):
    spec = get_architecture(name)
    assert count_weights(spec) == expected
    network = MaskedNetwork(spec, DenseStrategy(), initialise_tensors(spec, "elu_uniform", 0))
    assert sum(p.numel() for p in network.parameters()) == expected


def test_fcn_layer_shapes_and_fans():
    layers = layer_specs(get_architecture("fcn"))
    assert [(l.name, l.weight_shape, l.fan_in, l.fan_out) for l in layers] == [
        ("fc1", (300, 784), 784, 300),
        ("fc2", (100, 300), 300, 100),
        ("fc3", (10, 100), 100, 10),
    ]
    assert [l.is_output for l in layers] == [False, False, True]


def test_conv_fans_count_the_kernel():
    conv1 = layer_specs(get_architecture("conv2"))[0]
    assert conv1.weight_shape == (64, 3, 3, 3)
    assert (conv1.fan_in, conv1.fan_out) == (27, 576)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_forward_gives_logits_per_image(name):
    spec = get_architecture(name)
    weights = initialise_tensors(spec, "signed_constant", 0)
    scores = initialise_tensors(spec, "xavier_uniform", 1)
    network = MaskedNetwork(spec, SignedSupermaskStrategy(0.4), weights, scores)
    out = network(torch.randn(2, *spec.input_shape))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def test_unknown_architecture_lists_the_choices():
    with pytest.raises(ValueError, match="conv6.*fcn|fcn") as err:
        get_architecture("resnet18")
    for name in ARCHITECTURES:
        assert name in str(err.value)


def test_weights_of_another_architecture_are_rejected():
    fcn = get_architecture("fcn")
    weights = initialise_tensors(get_architecture("conv2"), "elu_uniform", 0)
    with pytest.raises(ValueError, match="fc1"):
        MaskedNetwork(fcn, DenseStrategy(), weights)


def test_shape_mismatch_names_layer_and_shapes():
    spec = get_architecture("fcn")
    weights = initialise_tensors(spec, "elu_uniform", 0)
    weights["fc2"] = torch.zeros(100, 299)
    with pytest.raises(ValueError, match=r"fc2.*\(100, 299\).*\(100, 300\)"):
        MaskedNetwork(spec, DenseStrategy(), weights)


def test_signed_supermask_freezes_weights_and_trains_scores():
    spec = get_architecture("fcn")
    network = MaskedNetwork(
        spec,
        SignedSupermaskStrategy(0.4),
        initialise_tensors(spec, "signed_constant", 0),
        initialise_tensors(spec, "xavier_uniform", 1),
    )
    trainable = {name for name, p in network.named_parameters() if p.requires_grad}
    assert trainable == {"fc1.mask_scores", "fc2.mask_scores", "fc3.mask_scores"}
    assert count_weights(spec) == sum(network.mask_scores()[n].numel() for n in ("fc1", "fc2", "fc3"))
