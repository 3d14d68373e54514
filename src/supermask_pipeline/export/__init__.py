"""The found network as a file a user can ship (no Kedro): compact format, reader, ONNX, MLflow model.

- :func:`encode` / :func:`decode` / :func:`read`: the compact format
  (:mod:`~supermask_pipeline.export.compact`, container in
  :mod:`~supermask_pipeline.export.container`, position codes in
  :mod:`~supermask_pipeline.export.coding`).
- :func:`load`: a compact file → ``torch.nn.Module`` computing the same logits.
- :func:`to_onnx`: the effective network (mask folded in) as an ONNX model
  (:mod:`~supermask_pipeline.export.onnx_graph`; needs the ``onnx`` package).
- :mod:`~supermask_pipeline.export.pyfunc`: the MLflow models-from-code model that rebuilds
  the network from the compact file (needs ``mlflow``; imported on use).
"""

from __future__ import annotations

from pathlib import Path

import torch

from supermask_pipeline.export.compact import (
    CompactNetwork,
    InitialWeights,
    InputSpec,
    decode,
    encode,
    entropy_bound_bits,
    read,
)
from supermask_pipeline.export.errors import (
    ChecksumError,
    CompactFormatError,
    CorruptPayloadError,
    FormatVersionError,
    NotACompactNetworkError,
    RegeneratedWeightsError,
    TruncatedFileError,
)
from supermask_pipeline.export.preprocessing import normalise_pixels
from supermask_pipeline.export.report import size_report

__all__ = [
    "ChecksumError",
    "CompactFormatError",
    "CompactNetwork",
    "CorruptPayloadError",
    "FormatVersionError",
    "InitialWeights",
    "InputSpec",
    "NotACompactNetworkError",
    "RegeneratedWeightsError",
    "TruncatedFileError",
    "decode",
    "encode",
    "entropy_bound_bits",
    "load",
    "normalise_pixels",
    "read",
    "size_report",
    "to_onnx",
]


def load(path: str | Path) -> torch.nn.Module:
    """The network of the compact file at ``path``, in eval mode, on the CPU.

    Input: normalised images float32 (N, C, H, W) (the file's ``input.normalisation``;
    :func:`normalise_pixels` turns uint8 pixels into them). Output: logits (N, classes),
    the same as the run's prune-and-test network.

    Raises:
        CompactFormatError: (a subclass naming the cause) a file that is not a compact
            network, of another format version, truncated, changed, or whose regenerated
            weights differ; nothing is returned then.
    """
    return read(path).module()


def to_onnx(network: CompactNetwork, **kwargs) -> bytes:
    """The ONNX model of ``network`` (see :func:`supermask_pipeline.export.onnx_graph.to_onnx`)."""
    from supermask_pipeline.export.onnx_graph import to_onnx as build

    return build(network, **kwargs)
