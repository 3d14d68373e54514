"""Export one run of the method template (no Kedro): its pruned network → compact file, ONNX, report.

:func:`export_run` is what the template's ``export`` node calls: it picks the ``initial``
value mode for methods that never train the weights (the signed supermask and the learned
binary masks), records the input normalisation (with the training split's channel
statistics where the run standardises per channel), reloads the file it wrote and tests the
reloaded network exactly as prune-and-test does (same device, batch size and data path),
so the reported accuracy is the shipped file's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from supermask_pipeline.experiment.assembly import check_split, device_tensors
from supermask_pipeline.experiment.config import RunConfig
from supermask_pipeline.export.compact import InitialWeights, InputSpec, decode, encode
from supermask_pipeline.export.onnx_graph import to_onnx
from supermask_pipeline.export.report import size_report
from supermask_pipeline.images import ImageSplit
from supermask_pipeline.images.normalisation import channel_statistics
from supermask_pipeline.training import evaluate, resolve_device

__all__ = ["RunExport", "export_run", "initial_weights_of", "input_spec_of"]

Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class RunExport:
    """The result of :func:`export_run`.

    Attributes:
        compact: the compact file's bytes.
        onnx: the ONNX model's bytes (the effective network, normalised input).
        metrics: ``export.compact_bytes``, ``export.ratio``, ``export.entropy_bound_bytes``,
            ``export.test_accuracy`` (of the reloaded network) … for MLflow.
        summary: :func:`~supermask_pipeline.export.size_report` with ``test_accuracy``,
            ``test_loss``, ``weights_identical`` (``bits``: every float bit, pruned zeros'
            signs included; ``values``: equal numbers, pruned zeros +0.0), the value mode per
            layer and ``onnx_bytes``.
    """

    compact: bytes
    onnx: bytes
    metrics: dict[str, float]
    summary: dict[str, Any]


def initial_weights_of(run: RunConfig) -> InitialWeights | None:
    """How the run's weights regenerate, for a strategy that never trains them; else None."""
    if run.strategy.build().trains_weights:
        return None
    return InitialWeights(run.init.weight_init, run.init.weight_init_scale, run.seeds.weights,
                          run.strategy.weight_transform, run.strategy.rescale)


def input_spec_of(run: RunConfig, train_split: ImageSplit) -> InputSpec:
    """The run's input normalisation (with the training split's channel statistics where it needs them)."""
    if run.data.normalisation == "per_channel_standardisation":
        mean, std = channel_statistics(train_split)
        return InputSpec(run.data.normalisation, tuple(float(v) for v in mean), tuple(float(v) for v in std))
    return InputSpec(run.data.normalisation)


def export_run(run: RunConfig, trained_weights: Tensors, masks: Tensors, train_split: ImageSplit,
               test_split: ImageSplit) -> RunExport:
    """The run's pruned network as a compact file and ONNX, reloaded and tested.

    Raises:
        ValueError: tensors or splits that do not fit the architecture.
        CompactFormatError: the file does not reproduce the weights (a bug; nothing is written).
    """
    check_split(test_split, run, "test_split")
    compact = encode(trained_weights, masks, run.model.spec, run.model.activation,
                     input_spec_of(run, train_split), initial_weights_of(run),
                     metadata={"method": run.name, "seed": run.seed, "dataset": run.model.dataset})
    network = decode(compact, f"the export of {run.name}")
    identical = "bits" if all(
        torch.equal(network.weights[name].view(torch.int32), tensor.to(torch.float32).contiguous().view(torch.int32))
        for name, tensor in trained_weights.items()) else "values"
    device = resolve_device(run.training.device)
    result = evaluate(network.module().to(device), device_tensors(test_split, run, device, train_split),
                      run.training.eval_batch_size)
    onnx = to_onnx(network)
    report = size_report(network)
    summary = {"method": run.name, "architecture": run.model.architecture, **report,
               "test_accuracy": result["accuracy"], "test_loss": result["loss"], "weights_identical": identical,
               "value_modes": {entry["name"]: entry["values"]["mode"] for entry in network.header["layers"]},
               "onnx_bytes": len(onnx)}
    metrics = {f"export.{key}": float(report[key])
               for key in ("compact_bytes", "dense_fp32_bytes", "ratio", "entropy_bound_bytes", "remaining_weight_count")}
    metrics.update({"export.test_accuracy": result["accuracy"], "export.onnx_bytes": float(len(onnx))})
    return RunExport(compact, onnx, metrics, summary)
