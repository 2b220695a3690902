"""ONNX export: ``torch.onnx.export(dynamo=True)`` with the custom ops translated (onnx_ops.py).

The file holds standard ONNX operators only (opset 18, default domain; checked before it is
written), a dynamic batch dimension, inputs ``face``, ``context`` and outputs ``logits`` (and
``attn``), and the metadata of ``glamor_fast.export.model.metadata`` as ``metadata_props``.
It runs in onnxruntime without this package (``glamor_fast.export.onnx_runtime``).
Needs the optional extra ``pip install "glamor_fast[onnx]"``.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
from pathlib import Path

import torch

from .files import publish
from .model import INPUT_NAMES, ExportNet, output_names
from .verify import checked_max_abs_diff

EXTRA_MODULES = ("onnx", "onnxscript", "onnxruntime")


def require_onnx_extra(modules=EXTRA_MODULES) -> None:
    """Raises MissingExtraError naming the extra when a module of the ONNX extra is missing."""
    from glamor_fast.data.faces import MissingExtraError

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtraError(f"{', '.join(missing)} not installed: ONNX export and inference need the "
                                f"optional extra: pip install \"glamor_fast[onnx]\"")


@contextlib.contextmanager
def _registry_quiet():
    """The exporter's registry warns once per torchvision op it cannot register when torchvision
    is absent; this network uses none of them."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def to_onnx(net: ExportNet, metadata: dict[str, str]):
    """The ``torch.onnx.ONNXProgram`` of ``net`` with ``metadata`` in its metadata_props."""
    from .onnx_ops import OPSET, translation_table, untranslated_ops
    from .pt2 import export_program, torch_export_noise_filtered

    program = export_program(net)
    missing = untranslated_ops(program)
    if missing:
        raise ValueError(f"no ONNX translation for {', '.join(missing)} (glamor_fast/export/onnx_ops.py)")
    with torch_export_noise_filtered(), _registry_quiet():
        onnx_program = torch.onnx.export(
            program, dynamo=True, custom_translation_table=translation_table(), opset_version=OPSET,
            input_names=list(INPUT_NAMES), output_names=list(output_names(net)), verbose=False)
    foreign = sorted({f"{n.domain}::{n.op_type}" for n in onnx_program.model.graph.all_nodes()
                      if n.domain not in ("", "ai.onnx")} | {str(f) for f in onnx_program.model.functions})
    if foreign:
        raise ValueError(f"the ONNX graph is not plain ONNX: it calls {', '.join(foreign)}")
    onnx_program.model.metadata_props.update(metadata)
    return onnx_program


def save_onnx(net: ExportNet, metadata: dict[str, str], out, verify: bool = True) -> dict:
    """Writes the ONNX export of ``net`` to ``out``; with ``verify``, the file is run in
    onnxruntime and compared with ``net`` before it is published.
    Returns {"max_abs_diff": float or None}."""
    require_onnx_extra()
    onnx_program = to_onnx(net, metadata)
    report = {"max_abs_diff": None}

    def write(tmp: Path) -> None:
        onnx_program.save(str(tmp), external_data=False)
        if verify:
            from .onnx_runtime import OnnxGlamorNet

            report["max_abs_diff"] = checked_max_abs_diff(net, OnnxGlamorNet(tmp))

    publish(out, write)
    return report
