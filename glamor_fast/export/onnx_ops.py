"""ONNX translations of the project's custom ops, for ``torch.onnx.export(dynamo=True)``.

Each function builds, from standard ONNX operators (opset 18), the same maths as the op it
translates; ``translation_table()`` maps each op to its function for the exporter's
``custom_translation_table``. The exporter calls a function with the op's arguments (ONNX
values for tensors, None for an absent optional tensor, Python values for the rest) and expects
one value per op output.

    glamor_fast::gla_forward          GLA as in glamor_fast/ops/reference.py (the split form:
                                      face half of the first layer once per sample), returning
                                      pooled, attn, lse and an empty hidden-layer placeholder
    glamor_fast::relu_pool            MaxPool 2x2 / 2 of Relu(x)
    glamor_fast::stem_conv_relu_pool  Conv 3x3 (pad 1) + bias, Relu, MaxPool 2x2 / 2
"""
from __future__ import annotations

import torch
from onnxscript import opset18 as op

OPSET = 18
_BIG = 2 ** 62  # a Slice end past any axis


def _ints(*values: int):
    return op.Constant(value_ints=list(values))


def gla_forward(face, context, w1, b1, w2, b2, hidden_scale=None, hidden_shift=None, save_hidden: bool = False):
    """face (B, Df), context (B, Dc, H, W), w1 (Hd, Df + Dc), b1 (Hd,), w2 (Hd,), b2 scalar,
    hidden_scale / hidden_shift (Hd,) or None -> pooled (B, Dc), attn (B, H, W), lse (B,)
    = log sum exp of the scores, hidden (0,) (the fused op's saved hidden layer, only ever
    asked for when a backward follows)."""
    if save_hidden:
        raise ValueError("glamor_fast::gla_forward with save_hidden=True is a training call; "
                         "export the model in eval mode under torch.no_grad()")
    df = op.Shape(face, start=1, end=2)
    cells = op.Transpose(op.Reshape(context, _ints(0, 0, -1)), perm=[0, 2, 1])       # (B, N, Dc)
    w1_face = op.Slice(w1, _ints(0), df, _ints(1))                                     # (Hd, Df)
    w1_cell = op.Slice(w1, df, _ints(_BIG), _ints(1))                                  # (Hd, Dc)
    u = op.Gemm(face, w1_face, b1, transB=1)                                           # (B, Hd)
    hidden = op.Relu(op.Add(op.MatMul(cells, op.Transpose(w1_cell, perm=[1, 0])),
                            op.Unsqueeze(u, _ints(1))))                                # (B, N, Hd)
    if hidden_scale is not None:  # a BatchNorm on the hidden layer, folded: g(x) = relu(scale relu(x) + shift)
        hidden = op.Relu(op.Add(op.Mul(hidden, hidden_scale), hidden_shift))
    scores = op.Add(op.MatMul(hidden, w2), b2)                                         # (B, N)
    attn = op.Softmax(scores, axis=1)
    pooled = op.Squeeze(op.MatMul(op.Unsqueeze(attn, _ints(1)), cells), _ints(1))      # (B, Dc)
    bhw = op.Concat(op.Shape(context, start=0, end=1), op.Shape(context, start=2, end=4), axis=0)
    lse = op.ReduceLogSumExp(scores, _ints(1), keepdims=0)
    empty = op.ConstantOfShape(_ints(0))
    return pooled, op.Reshape(attn, bhw), lse, op.CastLike(empty, lse)


def relu_pool(x):
    """x (N, C, H, W) -> max_pool2d(relu(x), 2) (N, C, H // 2, W // 2)."""
    pooled, _ = op.MaxPool(op.Relu(x), kernel_shape=[2, 2], strides=[2, 2])
    return pooled


def stem_conv_relu_pool(x, weight, bias=None):
    """x (N, Cin, H, W), weight (Cout, Cin, 3, 3), bias (Cout,) or None ->
    max_pool2d(relu(conv2d(x, weight, bias, padding=1)), 2) (N, Cout, H // 2, W // 2)."""
    conv = op.Conv(x, weight, pads=[1, 1, 1, 1]) if bias is None else op.Conv(x, weight, bias, pads=[1, 1, 1, 1])
    pooled, _ = op.MaxPool(op.Relu(conv), kernel_shape=[2, 2], strides=[2, 2])
    return pooled


_TRANSLATIONS = {"gla_forward": gla_forward, "relu_pool": relu_pool, "stem_conv_relu_pool": stem_conv_relu_pool}


def translation_table() -> dict:
    """{op overload: translation} for the custom ops glamor_fast._C registered (none when the
    extension is not built: the model then runs plain torch ops, which the exporter knows)."""
    import glamor_fast.models  # noqa: F401  (imports every op package: glamor_fast._C and the fake kernels)

    table = {}
    for name, fn in _TRANSLATIONS.items():
        if torch._C._dispatch_has_kernel_for_dispatch_key(f"glamor_fast::{name}", "CPU"):
            table[getattr(torch.ops.glamor_fast, name).default] = fn
    return table


def untranslated_ops(program: torch.export.ExportedProgram) -> list[str]:
    """Names of the glamor_fast ops in ``program``'s graphs (nested ones included) that have no
    translation here."""
    found = set()
    for module in program.graph_module.modules():
        graph = getattr(module, "graph", None)
        for node in graph.nodes if isinstance(graph, torch.fx.Graph) else ():
            target = node.target
            if (isinstance(target, torch._ops.OpOverload) and target.namespace == "glamor_fast"
                    and target._opname not in _TRANSLATIONS):
                found.add(f"glamor_fast::{target._opname}")
    return sorted(found)
