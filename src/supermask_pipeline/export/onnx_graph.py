"""The effective network (mask folded into the weights) as an ONNX model, for any runtime.

The graph is written from the architecture table rather than traced: ``Conv`` (3×3, stride
1, padding 1, no bias) and ``MaxPool`` (2×2, stride 2) in the order of ``spec.conv``, then
``Flatten`` (axis 1, the NCHW order of ``torch.flatten``) and one ``Gemm`` (B transposed,
no bias) per dense layer, with ``Elu`` (alpha 1) or ``Relu`` after every hidden layer. The
weights are the effective weights as float32 initialisers. Input ``images``: normalised
float32 (N, C, H, W), N dynamic; output ``logits`` (N, classes). Opset 17.
"""

from __future__ import annotations

import numpy as np

from supermask_pipeline.export.compact import CompactNetwork
from supermask_pipeline.models.architectures import POOL, layer_specs

__all__ = ["OPSET", "to_onnx"]

OPSET = 17


def to_onnx(network: CompactNetwork, *, producer: str = "supermask_pipeline") -> bytes:
    """The serialized ONNX ``ModelProto`` of ``network`` (checked with ``onnx.checker``).

    Raises:
        ImportError: the ``onnx`` package is missing (``pip install -e ".[export]"``).
        ValueError: an activation ONNX has no operator for here.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    activations = {"elu": ("Elu", {"alpha": 1.0}), "relu": ("Relu", {})}
    if network.activation not in activations:
        raise ValueError(f"No ONNX operator for activation {network.activation!r}; known: {sorted(activations)}.")
    op, attributes = activations[network.activation]
    spec = network.spec
    nodes, initialisers = [], []
    layers = iter(layer_specs(spec))
    current = "images"

    def add(op_type: str, inputs: list[str], name: str, **attrs) -> str:
        nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name

    pools = 0
    for item in spec.conv:
        if item == POOL:
            pools += 1
            current = add("MaxPool", [current], f"pool{pools}", kernel_shape=[2, 2], strides=[2, 2])
            continue
        layer = next(layers)
        weight = network.weights[layer.name].numpy().astype(np.float32)
        initialisers.append(numpy_helper.from_array(weight, f"{layer.name}.weight"))
        current = add("Conv", [current, f"{layer.name}.weight"], layer.name, kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                      strides=[1, 1])
        current = add(op, [current], f"{layer.name}.{network.activation}", **attributes)
    current = add("Flatten", [current], "flatten", axis=1)
    for layer in layers:
        weight = network.weights[layer.name].numpy().astype(np.float32)
        initialisers.append(numpy_helper.from_array(weight, f"{layer.name}.weight"))
        output = "logits" if layer.is_output else layer.name
        current = add("Gemm", [current, f"{layer.name}.weight"], output, transB=1)
        if not layer.is_output:
            current = add(op, [current], f"{layer.name}.{network.activation}", **attributes)
    channels, height, width = spec.input_shape
    graph = helper.make_graph(
        nodes, f"{spec.name}_{network.activation}",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", channels, height, width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", spec.num_classes])],
        initialisers,
    )
    model = helper.make_model(graph, producer_name=producer, opset_imports=[helper.make_opsetid("", OPSET)])
    model.doc_string = (f"{spec.name} ({network.activation}); input normalisation "
                        f"{network.input.normalisation}; mask folded into the weights")
    onnx.checker.check_model(model)
    return model.SerializeToString()
