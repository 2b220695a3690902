"""Exports of a trained GLAMOR-Net for inference outside this package's Python code.

``glamor-fast export CKPT OUT --format onnx|pt2|aoti`` (glamor_fast/cli/export.py) writes the
network ``predict`` runs (``model.load_for_export``):

- ``onnx`` (onnx.py): plain ONNX, the custom ops translated to standard operators
  (onnx_ops.py); run it with onnxruntime alone (onnx_runtime.OnnxGlamorNet);
- ``pt2`` (pt2.py): the ``torch.export`` program; ``aoti``: an AOTInductor package of it.
"""
from __future__ import annotations

from .model import ExportNet, load_for_export

FORMATS = ("onnx", "pt2", "aoti")


def save(net: ExportNet, metadata: dict[str, str], out, fmt: str, verify: bool = True) -> dict:
    """Writes ``net`` to ``out`` in format ``fmt`` (one of FORMATS); returns the verification report."""
    if fmt == "onnx":
        from .onnx import save_onnx as writer
    elif fmt == "pt2":
        from .pt2 import save_pt2 as writer
    elif fmt == "aoti":
        from .pt2 import save_aoti as writer
    else:
        raise ValueError(f"--format {fmt}: unknown format; choose one of {', '.join(FORMATS)}")
    return writer(net, metadata, out, verify=verify)


__all__ = ["FORMATS", "ExportNet", "load_for_export", "save"]
