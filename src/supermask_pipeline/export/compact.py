"""The found network as a compact file: kept positions, one sign bit per kept weight, magnitudes.

A masked network of any method is, per layer, the set of kept positions, the sign of each
kept weight and its magnitude. For a signed supermask (Koster et al., ICLR 2022) the
magnitude is one constant per layer and the network is ternary; for learned binary masks
over frozen weights (edge-popup, Ramanujan et al., CVPR 2020; Zhou et al.'s supermasks)
the kept values are the untrained initial weights, which regenerate from the initialiser
and its seed; trained weights (dense, lottery tickets, fine-tuning) are stored as values.

Per layer (header ``layers[i]``):

- ``coded``: the positions coded are the ``kept`` ones, or the ``pruned`` ones when fewer
  (a dense or nearly dense layer costs almost nothing);
- ``positions``: codec (``golomb`` with its parameter ``m``, or ``lzma``) and byte count
  (:mod:`~supermask_pipeline.export.coding`);
- ``signs``: bytes of the sign bits (1 = negative), one per kept weight, or 0;
- ``values``: how the kept magnitudes come back, the first of these that reproduces the
  layer exactly:

  - ``initial``: regenerated from ``header["initial"]`` (initialiser, scale, seed, weight
    transform, rescaling) exactly as the masked layer computes ``W ⊙ S`` (the sign bits are
    then those of the mask S); the pruned zeros keep the sign the product gives them, so the
    tensor is bit-identical to the trained effective weight;
  - ``constant``: every kept magnitude is ``scale`` (float32), the sign bits give the signs;
  - ``float16`` / ``float32``: the kept values themselves (their sign included), as byte
    planes, each raw or LZMA2-compressed.

  Modes other than ``initial`` write pruned weights as +0.0: equal to the training's −0.0
  as numbers (``torch.equal``), in every product and sum, hence in every logit.

``scale`` is also recorded for every layer whose kept magnitudes are all equal.
"""

from __future__ import annotations

import hashlib
import lzma
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from supermask_pipeline.export import coding, container
from supermask_pipeline.export.errors import CompactFormatError, CorruptPayloadError, RegeneratedWeightsError
from supermask_pipeline.models.architectures import (
    ArchitectureSpec,
    LayerSpec,
    fit_architecture,
    get_architecture,
    layer_specs,
)
from supermask_pipeline.models.initializers import initialise_tensors
from supermask_pipeline.models.network import rescale_factor, transform_weight

__all__ = ["CompactNetwork", "InitialWeights", "InputSpec", "decode", "encode", "entropy_bound_bits", "read"]

Tensors = Mapping[str, torch.Tensor]
VALUE_MODES = ("initial", "constant", "float16", "float32")


@dataclass(frozen=True)
class InputSpec:
    """What the network expects as input: the normalisation of the pixels (a name of
    :data:`supermask_pipeline.images.NORMALISATIONS`) and, for ``per_channel_standardisation``,
    the training split's per-channel mean and std of x / 255 (float64, one per channel)."""

    normalisation: str = "per_image_standardisation"
    channel_mean: tuple[float, ...] | None = None
    channel_std: tuple[float, ...] | None = None

    def as_header(self) -> dict[str, Any]:
        """The header's ``input`` object."""
        out: dict[str, Any] = {"normalisation": self.normalisation}
        if self.channel_mean is not None:
            out["channel_mean"] = [float(v) for v in self.channel_mean]
            out["channel_std"] = [float(v) for v in self.channel_std or ()]
        return out

    @classmethod
    def from_header(cls, values: Mapping[str, Any]) -> InputSpec:
        """The inverse of :meth:`as_header`."""
        mean, std = values.get("channel_mean"), values.get("channel_std")
        return cls(values["normalisation"], None if mean is None else tuple(mean), None if std is None else tuple(std))


@dataclass(frozen=True)
class InitialWeights:
    """How a run's untrained weights regenerate (for the ``initial`` value mode).

    Attributes:
        initializer: a name of :data:`~supermask_pipeline.models.INITIALIZERS`.
        scale: its constant (None: its default).
        seed: the seed of the ``weights`` stream (``RunSeeds(seed).weights``).
        weight_transform: the masked network's weight transform (``none``, ``signed_constant`` …).
        rescale: Zhou et al.'s dynamic weight rescaling (W ⊙ m · numel / Σ|m|).
    """

    initializer: str
    scale: float | None
    seed: int
    weight_transform: str = "none"
    rescale: bool = False

    def as_header(self) -> dict[str, Any]:
        """The header's ``initial`` object (without the checksum)."""
        return {"initializer": self.initializer, "scale": self.scale, "seed": int(self.seed),
                "weight_transform": self.weight_transform, "rescale": bool(self.rescale)}

    def base_weights(self, spec: ArchitectureSpec) -> dict[str, torch.Tensor]:
        """Layer name → the transformed initial weight (float32), as the masked layer holds it."""
        drawn = initialise_tensors(spec, self.initializer, self.seed, self.scale)
        return {layer.name: transform_weight(drawn[layer.name], layer, self.weight_transform) for layer in layer_specs(spec)}

    def effective(self, base: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``W ⊙ m`` (· numel / Σ|m| with ``rescale``), the masked layer's arithmetic
        (:meth:`supermask_pipeline.models.MaskedLayer.effective_weight`)."""
        weight = base * mask
        return weight * rescale_factor(mask) if self.rescale else weight


@dataclass
class CompactNetwork:
    """A decoded compact file.

    Attributes:
        spec: the architecture (the project's table entry, checked against the header's shapes).
        activation: ``elu`` or ``relu``.
        input: the expected input normalisation.
        weights: layer name → effective weight, float32 on the CPU (the pruned network).
        masks: layer name → int8 kept pattern: the mask S (−1/0/+1) where the file holds the
            mask's own signs (``initial`` mode), else 1 where kept.
        header: the parsed header.
        size_bytes: the file's size.
    """

    spec: ArchitectureSpec
    activation: str
    input: InputSpec
    weights: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    header: dict[str, Any]
    size_bytes: int
    metadata: dict[str, Any] = field(default_factory=dict)

    def module(self) -> torch.nn.Module:
        """The network in eval mode: a dense :class:`~supermask_pipeline.models.MaskedNetwork` of
        :attr:`weights`, the module that prune-and-test evaluates (input: normalised images
        float32 (N, C, H, W); output: logits (N, classes))."""
        from supermask_pipeline.masks import DenseStrategy
        from supermask_pipeline.models import MaskedNetwork

        network = MaskedNetwork(self.spec, DenseStrategy(), self.weights, activation=self.activation)
        network.requires_grad_(False)
        return network.eval()


def entropy_bound_bits(masks: Tensors) -> float:
    """Σ over layers of log2 C(n, k) + (k sign bits where the mask is signed): the bits needed
    for the kept positions (and signs) of a mask drawn uniformly among masks of its per-layer
    counts. Masks found by training have structure (dead units, pixel neighbourhoods) and can
    code below it."""
    bits = 0.0
    for mask in masks.values():
        flat = mask.reshape(-1)
        kept = int(flat.count_nonzero())
        bits += coding.log2_binomial(flat.numel(), kept) + (kept if bool((flat < 0).any()) else 0)
    return bits


def _bits_identical(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a.contiguous().view(torch.int32), b.contiguous().view(torch.int32))


#: Values are coded per byte plane (the sign-and-exponent byte of trained float32 weights
#: compresses to about a quarter, the mantissa bytes by 2 % at most): LZMA2 at preset 6 where a
#: 64 KiB sample of the plane shrinks below 90 % (about 1 MB/s: the exponent plane of a conv net
#: is worth it, the others are not), else raw.
_VALUE_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 6}]
_SAMPLE = 1 << 16


def _compress_plane(plane: bytes) -> bytes:
    sample = plane[:_SAMPLE]
    if len(lzma.compress(sample, format=lzma.FORMAT_RAW, filters=_VALUE_FILTERS)) >= 0.9 * len(sample):
        return plane
    packed = lzma.compress(plane, format=lzma.FORMAT_RAW, filters=_VALUE_FILTERS)
    return packed if len(packed) < len(plane) else plane


def _values_stream(values: np.ndarray) -> tuple[dict[str, Any], bytes]:
    """The header fields and bytes of the kept values: byte planes (little-endian, least
    significant first), each raw (exactly ``count`` bytes) or LZMA2 (fewer)."""
    raw = np.ascontiguousarray(values.astype(values.dtype.newbyteorder("<")))
    planes = [_compress_plane(plane.tobytes()) for plane in raw.view(np.uint8).reshape(-1, values.dtype.itemsize).T]
    return {"codec": "planes", "planes": [len(p) for p in planes]}, b"".join(planes)


def _values_from_stream(entry: Mapping[str, Any], data: bytes, dtype: np.dtype, count: int) -> np.ndarray:
    if entry.get("codec") != "planes":
        raise CorruptPayloadError(f"Unknown values codec {entry.get('codec')!r}; known: planes.")
    sizes = [int(n) for n in entry["planes"]]
    if len(sizes) != dtype.itemsize or sum(sizes) != len(data):
        raise CorruptPayloadError(f"The values stream of {len(data)} bytes does not hold the planes {sizes}.")
    planes, at = [], 0
    for size in sizes:
        plane = data[at : at + size]
        at += size
        if size < count:
            try:
                plane = lzma.decompress(plane, format=lzma.FORMAT_RAW, filters=_VALUE_FILTERS)
            except lzma.LZMAError as err:
                raise CorruptPayloadError(f"A byte plane of the values does not decompress ({err}).") from None
        if len(plane) != count:
            raise CorruptPayloadError(f"A byte plane of the values holds {len(plane)} bytes, expected {count}.")
        planes.append(np.frombuffer(plane, dtype=np.uint8))
    stacked = np.stack(planes, axis=1) if planes else np.zeros((count, dtype.itemsize), np.uint8)
    return np.ascontiguousarray(stacked).view(dtype.newbyteorder("<")).reshape(count).astype(dtype)


@dataclass
class _Layer:
    entry: dict[str, Any]
    streams: list[bytes]


def _encode_layer(layer: LayerSpec, weight: torch.Tensor, mask: torch.Tensor | None,
                  base: torch.Tensor | None, initial: InitialWeights | None, float16: bool) -> tuple[_Layer, str]:
    """One layer's header entry and streams, and how exactly it reproduces (``bits`` or ``values``)."""
    weight = weight.detach().to("cpu", torch.float32).contiguous()
    flat = weight.reshape(-1)
    mask_flat = None if mask is None else mask.detach().to("cpu").reshape(-1)
    kept = flat != 0 if mask_flat is None else (mask_flat != 0) | (flat != 0)
    kept_index = torch.nonzero(kept).reshape(-1).numpy()
    count, size = int(kept_index.size), flat.numel()
    kept_values = flat[kept]
    magnitudes = kept_values.abs()
    scale = float(magnitudes[0]) if count and bool((magnitudes == magnitudes[0]).all()) else None

    candidates: list[tuple[str, torch.Tensor, np.ndarray | None, np.ndarray | None]] = []  # mode, recon, signs, values
    if base is not None and initial is not None and mask_flat is not None and bool((kept == (mask_flat != 0)).all()):
        float_mask = mask.detach().to("cpu", torch.float32)
        recon = initial.effective(base, float_mask)
        signed = bool((mask_flat < 0).any())
        signs = (mask_flat[kept] < 0).numpy() if signed else None
        candidates.append(("initial", recon, signs, None))
    if scale is not None:
        recon = torch.zeros(size, dtype=torch.float32)
        recon[kept] = torch.where(torch.signbit(kept_values), -torch.tensor(scale), torch.tensor(scale))
        candidates.append(("constant", recon.reshape(weight.shape), torch.signbit(kept_values).numpy(), None))
    as16 = kept_values.to(torch.float16)
    if float16 or bool((as16.to(torch.float32) == kept_values).all()):
        recon = torch.zeros(size, dtype=torch.float32)
        recon[kept] = as16.to(torch.float32)
        candidates.append(("float16", recon.reshape(weight.shape), None, as16.numpy()))
    if not float16:
        recon = torch.zeros(size, dtype=torch.float32)
        recon[kept] = kept_values
        candidates.append(("float32", recon.reshape(weight.shape), None, kept_values.numpy()))

    exact = [c for c in candidates if _bits_identical(c[1], weight)]
    equal = [c for c in candidates if torch.equal(c[1], weight)]
    if exact:
        chosen, fidelity = exact[0], "bits"
    elif equal:
        chosen, fidelity = equal[0], "values"
    else:  # only a requested lossy float16
        chosen, fidelity = next(c for c in candidates if c[0] == "float16"), "float16"
    mode, _, signs, values = chosen

    pruned = count * 2 > size
    coded = np.setdiff1d(np.arange(size, dtype=np.int64), kept_index, assume_unique=True) if pruned else kept_index
    codec, parameters, position_bytes = coding.encode_positions(coded)
    sign_bytes = b"" if signs is None else np.packbits(signs.astype(np.uint8)).tobytes()
    entry: dict[str, Any] = {
        "name": layer.name, "kind": layer.kind, "shape": list(layer.weight_shape), "kept": count,
        "coded": "pruned" if pruned else "kept",
        "positions": {"codec": codec, **parameters, "bytes": len(position_bytes)},
        "signs": len(sign_bytes),
    }
    streams = [position_bytes, sign_bytes]
    value_entry: dict[str, Any] = {"mode": mode}
    if values is not None:
        fields, value_bytes = _values_stream(values)
        value_entry.update(fields, bytes=len(value_bytes))
        streams.append(value_bytes)
    entry["values"] = value_entry
    if scale is not None:
        entry["scale"] = scale
    return _Layer(entry, streams), fidelity


def encode(
    weights: Tensors,
    masks: Tensors | None,
    architecture: str | ArchitectureSpec,
    activation: str,
    input_spec: InputSpec | None = None,
    initial: InitialWeights | None = None,
    *,
    float16: bool = False,
    metadata: Mapping[str, Any] | None = None,
) -> bytes:
    """The compact file of a pruned network.

    Args:
        weights: layer name → effective weight (the run's ``trained_weights``: W ⊙ mask with
            the weight transform, rescaling and learned scale applied), float32.
        masks: layer name → the found mask (int8 −1/0/+1 or 0/1); None: the nonzero weights.
        architecture: a name of the architecture table (``fcn``, ``conv2`` …).
        activation: ``elu`` or ``relu``.
        input_spec: the input normalisation the network was trained with.
        initial: how the untrained weights regenerate; given only when the method does not
            train the weights (the ``initial`` mode is then tried for every layer).
        float16: store values as float16 even where that rounds them (lossy; the header says
            ``float16``). Default: float16 only where it is exact.
        metadata: small JSON-serialisable facts to keep in the header (method, seed, run id).

    Returns:
        The file's bytes (:mod:`~supermask_pipeline.export.container`). The encoding is
        decoded again before it is returned and must reproduce ``weights``: bit for bit in
        ``initial`` mode and wherever the pruned zeros are +0.0, as values otherwise.

    Raises:
        ValueError: tensors that do not fit the architecture.
        CompactFormatError: the round trip does not reproduce the weights (a bug; nothing is returned).
    """
    # A spec fitted to the run's dataset (input size, classes) is written as it is.
    spec = architecture if isinstance(architecture, ArchitectureSpec) else get_architecture(architecture)
    from supermask_pipeline.models import check_layer_tensors

    check_layer_tensors(spec, weights, "weights to export")
    if masks is not None:
        check_layer_tensors(spec, masks, "masks to export", floating=False)
    input_spec = input_spec or InputSpec()
    bases = initial.base_weights(spec) if initial is not None else {}
    layers, fidelity = [], {}
    for layer in layer_specs(spec):
        encoded, fidelity[layer.name] = _encode_layer(
            layer, weights[layer.name], None if masks is None else masks[layer.name], bases.get(layer.name), initial, float16
        )
        layers.append(encoded)
    header: dict[str, Any] = {
        "format": "supermask_pipeline compact network",
        "architecture": {"name": spec.name, "input_shape": list(spec.input_shape), "conv": list(spec.conv),
                         "dense": list(spec.dense)},
        "activation": activation,
        "input": input_spec.as_header(),
    }
    regenerated = [e.entry["name"] for e in layers if e.entry["values"]["mode"] == "initial"]
    if regenerated:
        digest = hashlib.sha256(b"".join(_tensor_bytes(weights[name]) for name in regenerated)).hexdigest()
        header["initial"] = {**initial.as_header(), "sha256": digest}
    if metadata:
        header["metadata"] = dict(metadata)
    header["layers"] = [e.entry for e in layers]
    data = container.pack(header, b"".join(s for e in layers for s in e.streams))
    back = decode(data, "the new export")
    for name, tensor in weights.items():
        same = _bits_identical if fidelity[name] == "bits" else torch.equal
        if fidelity[name] != "float16" and not same(back.weights[name], tensor.to(torch.float32)):
            raise CompactFormatError(f"Exporting layer {name!r}: the file does not reproduce the weights ({fidelity[name]}).")
    return data


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()


def _check_header(header: Mapping[str, Any], source: str) -> tuple[ArchitectureSpec, list[dict[str, Any]]]:
    try:
        architecture = header["architecture"]
        spec = get_architecture(architecture["name"])
        channels, height, width = (int(d) for d in architecture.get("input_shape", spec.input_shape))
        dense = tuple(architecture.get("dense", spec.dense))
        if (channels, height, width) != spec.input_shape or dense[-1:] != spec.dense[-1:]:
            # fitted to another dataset: the table's layers with the header's input and classes
            spec = fit_architecture(spec, (height, width, channels), int(dense[-1]), spec.dataset)
        layers = list(header["layers"])
        header["activation"], header["input"]["normalisation"]
    except (KeyError, TypeError, ValueError) as err:
        raise CompactFormatError(f"{source}: the header lacks or misstates a field ({err}).") from None
    expected = layer_specs(spec)
    found = [(entry.get("name"), tuple(entry.get("shape", ()))) for entry in layers]
    if found != [(layer.name, layer.weight_shape) for layer in expected]:
        raise CompactFormatError(
            f"{source}: layers {found} do not match architecture {spec.name!r} "
            f"({[(layer.name, layer.weight_shape) for layer in expected]})."
        )
    if tuple(architecture.get("conv", ())) != spec.conv or tuple(architecture.get("dense", ())) != spec.dense:
        raise CompactFormatError(f"{source}: architecture {spec.name!r} differs from this project's table.")
    return spec, layers


def decode(data: bytes, source: str = "the file") -> CompactNetwork:
    """The network of a compact file's bytes.

    Raises:
        NotACompactNetworkError, FormatVersionError, TruncatedFileError, ChecksumError:
            from :func:`~supermask_pipeline.export.container.unpack`, before anything is decoded.
        CorruptPayloadError: a stream that does not decode as the header says.
        RegeneratedWeightsError: the initial weights regenerated from the seed differ from
            the exported ones (another random-number generator).
        CompactFormatError: a header that does not describe a network of the project's table.
    """
    header, payload = container.unpack(data, source)
    spec, entries = _check_header(header, source)
    initial, bases = None, {}
    try:
        if "initial" in header:
            values = dict(header["initial"])
            values.pop("sha256", None)
            initial = InitialWeights(**values)
        if initial is not None and any(e["values"]["mode"] == "initial" for e in entries):
            bases = initial.base_weights(spec)
    except (KeyError, TypeError, ValueError) as err:
        raise CorruptPayloadError(f"{source}: the header's 'initial' cannot regenerate the weights ({err}).") from None
    weights, masks, at = {}, {}, 0

    def take(count: int) -> bytes:
        nonlocal at
        if count < 0 or at + count > len(payload):
            raise CorruptPayloadError(f"{source}: the header's stream lengths exceed the {len(payload)}-byte payload.")
        chunk = payload[at : at + count]
        at += count
        return chunk

    for layer, entry in zip(layer_specs(spec), entries):
        try:
            weights[layer.name], masks[layer.name] = _decode_layer(layer, entry, take, bases.get(layer.name), initial)
        except (KeyError, TypeError) as err:
            raise CorruptPayloadError(f"{source}: layer {layer.name!r} has a malformed header entry ({err}).") from None
    if at != len(payload):
        raise CorruptPayloadError(f"{source}: {len(payload) - at} payload bytes are not described by the header.")
    regenerated = [e["name"] for e in entries if e["values"]["mode"] == "initial"]
    if regenerated:
        digest = hashlib.sha256(b"".join(_tensor_bytes(weights[name]) for name in regenerated)).hexdigest()
        if digest != header["initial"].get("sha256"):
            raise RegeneratedWeightsError(
                f"{source}: the weights regenerated from initialiser {initial.initializer!r}, seed {initial.seed} "
                f"differ from the exported ones (layers {regenerated}). This torch ({torch.__version__}) draws "
                "other random numbers than the one that exported the file; export with initial=None to store values."
            )
    return CompactNetwork(spec, header["activation"], InputSpec.from_header(header["input"]), weights, masks, header,
                          len(data), dict(header.get("metadata", {})))


def _decode_layer(layer: LayerSpec, entry: Mapping[str, Any], take, base: torch.Tensor | None,
                  initial: InitialWeights | None) -> tuple[torch.Tensor, torch.Tensor]:
    size, count = layer.num_weights, int(entry["kept"])
    if not 0 <= count <= size:
        raise CorruptPayloadError(f"Layer {layer.name!r} keeps {count} of {size} weights.")
    pruned = entry["coded"] == "pruned"
    positions = entry["positions"]
    coded = coding.decode_positions(positions["codec"], positions, take(int(positions["bytes"])),
                                    size - count if pruned else count, size)
    if pruned:
        keep = np.ones(size, dtype=bool)
        keep[coded] = False
    else:
        keep = np.zeros(size, dtype=bool)
        keep[coded] = True
    kept = torch.from_numpy(keep)
    sign_bytes = take(int(entry["signs"]))
    negative = None
    if sign_bytes:
        if len(sign_bytes) != math.ceil(count / 8):
            raise CorruptPayloadError(f"Layer {layer.name!r}: {len(sign_bytes)} sign bytes for {count} kept weights.")
        negative = torch.from_numpy(np.unpackbits(np.frombuffer(sign_bytes, dtype=np.uint8))[:count].astype(bool))
    mode = entry["values"]["mode"]
    mask = torch.zeros(size, dtype=torch.int8)
    mask[kept] = 1
    if mode == "initial":
        if base is None or initial is None:
            raise CorruptPayloadError(f"Layer {layer.name!r} regenerates its weights but the header has no 'initial'.")
        if negative is not None:
            mask[kept] = torch.where(negative, torch.tensor(-1, dtype=torch.int8), torch.tensor(1, dtype=torch.int8))
        mask = mask.reshape(layer.weight_shape)
        return initial.effective(base, mask.to(torch.float32)).contiguous(), mask
    weight = torch.zeros(size, dtype=torch.float32)
    if mode == "constant":
        if negative is None and count:
            raise CorruptPayloadError(f"Layer {layer.name!r} has constant magnitudes but no sign bits.")
        scale = torch.tensor(float(entry["scale"]), dtype=torch.float32)
        weight[kept] = torch.where(negative, -scale, scale) if count else weight[kept]
    elif mode in ("float16", "float32"):
        values = entry["values"]
        dtype = np.dtype(np.float16 if mode == "float16" else np.float32)
        array = _values_from_stream(values, take(int(values["bytes"])), dtype, count)
        weight[kept] = torch.from_numpy(array.astype(np.float32))
    else:
        raise CorruptPayloadError(f"Layer {layer.name!r}: unknown value mode {mode!r}; known: {', '.join(VALUE_MODES)}.")
    return weight.reshape(layer.weight_shape), mask.reshape(layer.weight_shape)


def read(path: str | Path) -> CompactNetwork:
    """:func:`decode` of the file at ``path`` (errors name the path)."""
    path = Path(path)
    return decode(path.read_bytes(), str(path))
