"""Floating-point operations of one ONNX graph call, counted from the graph with shape inference.

Counted: ``Conv``, ``ConvTranspose``, ``Gemm`` and ``MatMul`` as 2 FLOPs per multiply-accumulate, for the
concrete input shapes of the call. Element-wise ops, activations, resizes and reductions are not counted
(they are memory-bound and small next to the convolutions), so the counts are a slight underestimate.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import onnx
from onnx import shape_inference

COUNTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _shape_map(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Every tensor name → its static shape (initializers, inputs, inferred intermediates and outputs)."""
    shapes: dict[str, tuple[int, ...]] = {init.name: tuple(init.dims) for init in model.graph.initializer}
    for value in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(int(d.dim_value) for d in dims)
    for node in model.graph.node:  # weights stored as Constant nodes
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    shapes[node.output[0]] = tuple(attribute.t.dims)
    return shapes


def _node_macs(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> int:
    """Multiply-accumulates of one counted node (raises KeyError when a needed shape is unknown)."""
    if node.op_type == "Conv":  # Y (N, Cout, *s) x W (Cout, Cin/g, *k)
        return math.prod(shapes[node.output[0]]) * math.prod(shapes[node.input[1]][1:])
    if node.op_type == "ConvTranspose":  # X (N, Cin, *s) x W (Cin, Cout/g, *k)
        return math.prod(shapes[node.input[0]]) * math.prod(shapes[node.input[1]][1:])
    if node.op_type == "Gemm":  # Y (M, N) = A (M, K) x B (K, N), B stored (N, K) when transB
        b = shapes[node.input[1]]
        trans_b = any(at.name == "transB" and at.i for at in node.attribute)
        return math.prod(shapes[node.output[0]]) * (b[1] if trans_b else b[0])
    if node.op_type == "MatMul":
        a = shapes[node.input[0]]
        return math.prod(shapes[node.output[0]]) * a[-1]
    return 0


def fix_input_shapes(model: onnx.ModelProto, input_shapes: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    """Copy of ``model`` whose graph inputs have the given static shapes, with shapes inferred throughout."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    del fixed.graph.value_info[:]
    for value in fixed.graph.input:
        if value.name not in input_shapes:
            continue
        shape = input_shapes[value.name]
        dims = value.type.tensor_type.shape.dim
        if len(dims) != len(shape):
            raise ValueError(f"graph input {value.name} has rank {len(dims)}, not {len(shape)} (shape {shape})")
        for dim, size in zip(dims, shape):
            dim.Clear()
            dim.dim_value = int(size)
    try:  # onnxruntime's symbolic inference follows Shape → Tile/Reshape chains that onnx's own does not
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        return SymbolicShapeInference.infer_shapes(fixed, auto_merge=True)
    except Exception:  # noqa: BLE001 - any failure: fall back to onnx's static inference
        return shape_inference.infer_shapes(fixed, data_prop=True)


@functools.lru_cache(maxsize=8)
def _load(path: str) -> onnx.ModelProto:
    return onnx.load(path)


@functools.lru_cache(maxsize=256)
def _count(path: str, shapes_key: tuple[tuple[str, tuple[int, ...]], ...]) -> int:
    model = fix_input_shapes(_load(path), dict(shapes_key))
    shapes = _shape_map(model)
    total = 0
    for node in model.graph.node:
        if node.op_type in COUNTED_OPS:
            try:
                total += _node_macs(node, shapes)
            except KeyError as missing:
                raise ValueError(f"{Path(path).name}: shape of {missing} unknown after shape inference "
                                 f"for inputs {dict(shapes_key)}; FLOPs cannot be counted") from None
    return 2 * total


def graph_flops(path: str | Path, input_shapes: dict[str, tuple[int, ...]]) -> int:
    """FLOPs (2 x multiply-accumulates of Conv/ConvTranspose/Gemm/MatMul) of one call of the graph at ``path``
    with the given input shapes, e.g. ``{"image": (1, 1, 64, 96, 72)}``."""
    key = tuple(sorted((name, tuple(int(s) for s in shape)) for name, shape in input_shapes.items()))
    return _count(str(path), key)
