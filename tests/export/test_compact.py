"""The compact format: exact round trips for every kind of magnitude, sizes, and files refused
with a named error (truncated, changed, another version, regenerated weights that differ)."""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np
import pytest
import torch

from supermask_pipeline import export
from supermask_pipeline.export import container
from supermask_pipeline.masks import DenseStrategy, get_mask_strategy
from supermask_pipeline.models import MaskedNetwork, initialise_tensors, layer_specs

from .conftest import SEED, SPEC, signed_supermask

INITIAL = export.InitialWeights("signed_constant", None, SEED)


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.contiguous().view(torch.int32)


def _bits_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(_bits(a[k]), _bits(b[k])) for k in a)


def test_signed_supermask_round_trip_is_bit_identical_with_its_negative_zeros(signed_network):
    network, _ = signed_network
    weights, masks = network.effective_weights(), network.masks()
    assert sum(int((torch.signbit(w) & (w == 0)).sum()) for w in weights.values()) > 0  # W ⊙ S has −0.0
    data = export.encode(weights, masks, "fcn", "elu", initial=INITIAL)
    back = export.decode(data)
    assert _bits_equal(back.weights, weights)
    assert all(torch.equal(back.masks[name], masks[name]) for name in masks)  # the mask S itself
    assert [e["values"]["mode"] for e in back.header["layers"]] == ["initial"] * 3
    for entry, layer in zip(back.header["layers"], layer_specs(SPEC)):  # the per-layer constant c = sqrt(6/fan_in)
        assert entry["scale"] == pytest.approx((6 / layer.fan_in) ** 0.5) and entry["shape"] == list(layer.weight_shape)
        assert entry["signs"] == -(-entry["kept"] // 8)  # one sign bit per kept weight


def test_signed_supermask_size_is_near_the_entropy_bound(signed_network):
    network, _ = signed_network
    masks = network.masks()
    data = export.encode(network.effective_weights(), masks, "fcn", "elu", initial=INITIAL)
    report = export.size_report(export.decode(data))
    bound = export.entropy_bound_bits(masks) / 8
    assert report["entropy_bound_bytes"] == pytest.approx(bound)
    payload = report["positions_bytes"] + report["signs_bytes"]
    assert bound <= payload <= 1.03 * bound + 8  # a uniform random mask: Golomb within 3 % of log2 C(n, k) + k
    assert report["compact_bytes"] == len(data) == payload + report["header_bytes"]
    assert report["header_bytes"] < 1200
    assert report["dense_fp32_bytes"] == 4 * 266_200 and report["ratio"] == pytest.approx(4 * 266_200 / len(data))


def test_without_the_seed_the_constant_mode_keeps_values_and_kept_bits(signed_network):
    network, _ = signed_network
    weights = network.effective_weights()
    back = export.decode(export.encode(weights, network.masks(), "fcn", "elu"))
    assert [e["values"]["mode"] for e in back.header["layers"]] == ["constant"] * 3
    for name, weight in weights.items():
        assert torch.equal(back.weights[name], weight)  # equal numbers; pruned zeros are +0.0 here
        kept = weight != 0
        assert torch.equal(_bits(back.weights[name])[kept], _bits(weight)[kept])
        assert not torch.signbit(back.weights[name][~kept]).any()


def test_trained_values_are_stored_exactly():
    generator = torch.Generator().manual_seed(3)
    masks, weights = {}, {}
    for layer in layer_specs(SPEC):
        masks[layer.name] = (torch.rand(layer.weight_shape, generator=generator) < 0.05).to(torch.int8)
        weights[layer.name] = torch.randn(layer.weight_shape, generator=generator).abs() * masks[layer.name]
    back = export.decode(export.encode(weights, masks, "fcn", "relu"))
    assert _bits_equal(back.weights, weights)
    assert [e["values"]["mode"] for e in back.header["layers"]] == ["float32"] * 3
    assert all(e["signs"] == 0 for e in back.header["layers"])  # the values carry their sign bit


def test_float16_exact_where_it_is_and_lossy_only_on_request():
    weights = {layer.name: torch.zeros(layer.weight_shape) for layer in layer_specs(SPEC)}
    weights["fc3"][0, :4] = torch.tensor([0.5, -0.25, 1.5, 3.0])
    weights["fc2"][1, 2:4] = torch.tensor([0.1, 0.3])  # not float16 numbers
    back = export.decode(export.encode(weights, None, "fcn", "elu"))
    modes = {e["name"]: e["values"]["mode"] for e in back.header["layers"]}
    assert modes["fc2"] == "float32" and modes["fc3"] == "float16"
    assert _bits_equal(back.weights, weights)
    lossy = export.decode(export.encode(weights, None, "fcn", "elu", float16=True))
    assert lossy.header["layers"][1]["values"]["mode"] == "float16"
    assert float(lossy.weights["fc2"][1, 2]) == float(torch.tensor(0.1).half())


def test_a_dense_network_codes_no_positions():
    weights = initialise_tensors(SPEC, "elu_uniform", 5)
    data = export.encode(weights, None, "fcn", "elu")
    back = export.decode(data)
    assert _bits_equal(back.weights, weights)
    assert all(e["coded"] == "pruned" and e["positions"]["bytes"] == 0 for e in back.header["layers"])
    assert export.size_report(back)["positions_bytes"] == 0


@pytest.mark.parametrize("strategy, transform, rescale, initializer", [
    ("edge_popup", "none", False, "kaiming_normal"),        # Ramanujan et al.: top-k of the scores
    ("bernoulli", "signed_constant", True, "xavier_normal"),  # Zhou et al.: sign(W)·std, dynamic rescaling
])
def test_untrained_weights_regenerate_from_the_seed(strategy, transform, rescale, initializer):
    weights = initialise_tensors(SPEC, initializer, 11)
    scores = initialise_tensors(SPEC, "kaiming_uniform", 12, 1.0)
    network = MaskedNetwork(SPEC, get_mask_strategy(strategy), weights, scores, "relu",
                            weight_transform=transform, rescale=rescale).eval()
    effective, masks = network.effective_weights(), network.masks()
    initial = export.InitialWeights(initializer, None, 11, transform, rescale)
    data = export.encode(effective, masks, "fcn", "relu", initial=initial)
    back = export.decode(data)
    assert _bits_equal(back.weights, effective)
    assert [e["values"]["mode"] for e in back.header["layers"]] == ["initial"] * 3
    report = export.size_report(back)
    assert report["signs_bytes"] == 0 and report["values_bytes"] == 0  # a binary mask over regenerated weights
    assert len(data) < 0.04 * report["dense_fp32_bytes"]


def test_load_gives_the_prune_and_test_logits(signed_network, tmp_path):
    network, _ = signed_network
    weights = network.effective_weights()
    path = tmp_path / "network.smnet"
    path.write_bytes(export.encode(weights, network.masks(), "fcn", "elu", initial=INITIAL))
    module = export.load(path)
    reference = MaskedNetwork(SPEC, DenseStrategy(), weights, activation="elu").eval()
    x = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(module(x), reference(x))
        assert torch.equal(module(x), network.eval()(x))  # the masked network itself, bit for bit
    assert not module.training and not any(p.requires_grad for p in module.parameters())


# --- files that must be refused -----------------------------------------------------------------


@pytest.fixture(scope="module")
def compact() -> bytes:
    network, _ = signed_supermask()
    return export.encode(network.effective_weights(), network.masks(), "fcn", "elu", initial=INITIAL)


@pytest.mark.parametrize("cut", [0, 3, 10, 200, -1, -33, -500])
def test_a_truncated_file_is_refused(compact, tmp_path, cut):
    path = tmp_path / "cut.smnet"
    path.write_bytes(compact[:cut])
    with pytest.raises(export.TruncatedFileError, match=r"cut\.smnet.*(cut off|truncated)"):
        export.load(path)


def test_extra_bytes_are_refused(compact):
    with pytest.raises(export.TruncatedFileError, match="followed by extra bytes"):
        export.decode(compact + b"\x00")


@pytest.mark.parametrize("where", ["header", "payload", "trailer"])
def test_a_flipped_byte_is_refused_by_the_checksum(compact, where):
    header_bytes = struct.unpack_from("<I", compact, 6)[0]
    at = {"header": container.PREFIX_BYTES + 20, "payload": container.PREFIX_BYTES + header_bytes + 100,
          "trailer": len(compact) - 1}[where]
    changed = bytearray(compact)
    changed[at] ^= 0x10
    with pytest.raises(export.ChecksumError, match="SHA-256 mismatch.*Nothing was loaded"):
        export.decode(bytes(changed))


def test_another_format_version_is_refused(compact):
    changed = bytearray(compact)
    changed[5] = 2
    with pytest.raises(export.FormatVersionError, match="format version 2; this reader knows version 1"):
        export.decode(bytes(changed))


def test_another_kind_of_file_is_refused(tmp_path):
    with pytest.raises(export.NotACompactNetworkError, match="not a compact network file"):
        export.decode(b"\x89PNG\r\n\x1a\n" + bytes(100))


def _rewritten(compact: bytes, edit) -> bytes:
    """The file with its header edited and a valid checksum again (a writer bug or a hand edit)."""
    header, payload = container.unpack(compact)
    edit(header)
    return container.pack(header, payload)


def test_regenerated_weights_that_differ_are_refused(compact):
    def other_seed(header):
        header["initial"]["seed"] += 1

    with pytest.raises(export.RegeneratedWeightsError, match="differ from the exported ones"):
        export.decode(_rewritten(compact, other_seed))


def test_an_unknown_initialiser_is_refused(compact):
    def unknown(header):
        header["initial"]["initializer"] = "orthogonal"

    with pytest.raises(export.CorruptPayloadError, match="cannot regenerate the weights.*Unknown initialiser 'orthogonal'"):
        export.decode(_rewritten(compact, unknown))


def test_a_header_that_misstates_the_payload_is_refused(compact):
    def more_kept(header):
        header["layers"][0]["positions"]["bytes"] += 1

    with pytest.raises(export.CompactFormatError):
        export.decode(_rewritten(compact, more_kept))

    def other_shape(header):
        header["layers"][0]["shape"] = [300, 783]

    with pytest.raises(export.CompactFormatError, match="do not match architecture 'fcn'"):
        export.decode(_rewritten(compact, other_shape))


def test_the_header_is_readable_json(compact):
    header_bytes = struct.unpack_from("<I", compact, 6)[0]
    header = json.loads(compact[container.PREFIX_BYTES : container.PREFIX_BYTES + header_bytes])
    assert header["architecture"]["name"] == "fcn" and header["activation"] == "elu"
    assert header["initial"]["seed"] == SEED and len(header["initial"]["sha256"]) == 64
    assert compact[-32:] == hashlib.sha256(compact[:-32]).digest()
