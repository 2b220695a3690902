"""Runs an ONNX file written by ``glamor-fast export --format onnx`` with onnxruntime alone.

``OnnxGlamorNet(path)`` reads the class names and preprocessing from the file's metadata and
is called like the PyTorch network: ``net(face, context) -> (logits, attn)`` on CPU float32
tensors, face (B, 3, 96, 96) and context (B, 3, 112, 112) in [0, 1]; logits (B, C) float32
(before the softmax), attn (B, h, w) float32, or None for a model without attention. No model
code runs: the graph is plain ONNX.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from .model import INPUT_NAMES


class OnnxGlamorNet:
    """An exported GLAMOR-Net in an onnxruntime CPU session.

    Attributes: ``classes`` (list of C names), ``preprocessing`` (dict, see
    ``glamor_fast.export.model.metadata``), ``metadata`` (every metadata string), ``path``.
    """

    def __init__(self, path, threads: Optional[int] = None):
        from .onnx import require_onnx_extra

        require_onnx_extra(("onnxruntime",))
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(2, "no such ONNX file", str(self.path))
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        # Idle onnxruntime threads otherwise spin for a while after each run, taking the cores from
        # the PyTorch / OpenCV work (detection, preprocessing) that runs between calls.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ValueError(f"{self.path}: not a model onnxruntime can load ({first})") from None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        if "classes" not in self.metadata or [i.name for i in self.session.get_inputs()] != list(INPUT_NAMES):
            raise ValueError(f"{self.path}: not a glamor_fast export (no 'classes' metadata or inputs other than "
                             f"{', '.join(INPUT_NAMES)}); write one with `glamor-fast export CKPT OUT.onnx`")
        self.classes = [str(c) for c in json.loads(self.metadata["classes"])]
        self.preprocessing = json.loads(self.metadata.get("preprocessing", "{}"))
        self._outputs = [o.name for o in self.session.get_outputs()]
        self._attn_grid = tuple(self.session.get_outputs()[1].shape[1:]) if len(self._outputs) > 1 else None

    def __call__(self, face: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """face (B, 3, 96, 96), context (B, 3, 112, 112) float32 CPU -> logits (B, C), attn (B, h, w) or None."""
        for name, x, side in (("face", face, 96), ("context", context, 112)):
            if not isinstance(x, torch.Tensor) or x.dtype != torch.float32 or x.device.type != "cpu":
                desc = f"{x.dtype} on {x.device}" if isinstance(x, torch.Tensor) else type(x).__name__
                raise ValueError(f"OnnxGlamorNet: {name} must be a float32 CPU tensor, got {desc}")
            if x.dim() != 4 or tuple(x.shape[1:]) != (3, side, side):
                raise ValueError(f"OnnxGlamorNet: {name} must be (B, 3, {side}, {side}), got {tuple(x.shape)}")
        if face.shape[0] != context.shape[0]:
            raise ValueError(f"OnnxGlamorNet: face has batch {face.shape[0]} but context has {context.shape[0]}")
        if face.shape[0] == 0:
            attn = None if self._attn_grid is None else torch.zeros((0, *self._attn_grid))
            return torch.zeros((0, len(self.classes))), attn
        feeds = {"face": face.contiguous().numpy(), "context": context.contiguous().numpy()}
        outs = [torch.from_numpy(o) for o in self.session.run(self._outputs, feeds)]
        return outs[0], (outs[1] if len(outs) > 1 else None)
