"""The original authors' TensorFlow GLAMOR-Net weights as a PyTorch GLAMORNet.

The authors' TF2 code (github.com/minhnhatvt/glamor-net, ``model.py``) saves object-based
names such as ``FaceEncodingNet/blocks/0/conv/kernel/.ATTRIBUTES/VARIABLE_VALUE``. Their network
is the ``glamor-net-authors`` preset: conv5 encoders (Conv2D with bias -> BatchNorm -> ReLU ->
MaxPool), GLA with a BatchNorm on its hidden layer, adaptive fusion, Keras BatchNorm settings.

Conversion (all exact, float32):
- Conv2D kernel (kh, kw, in, out) -> Conv2d weight (out, in, kh, kw); Dense kernel (in, out) ->
  Linear weight (out, in).
- Our encoder convs have no bias: each conv bias b is folded into the running mean of the
  BatchNorm that follows (running_mean = moving_mean - b), which is the same function in eval
  mode; in training mode BatchNorm subtracts the batch mean, so a bias there changes nothing.
- BatchNorm gamma/beta/moving_mean/moving_variance -> weight/bias/running_mean/running_var.
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np
import torch

from ..tf_checkpoint import TFCheckpointError, read_index, read_variables
from .glamor import GLAMORNet, build_model

PRESET = "glamor-net-authors"
SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
ENCODERS = {"FaceEncodingNet": "face_encoder", "ContextEncodingNet": "context_encoder"}
# Dense layers: TF name -> our Linear's state-dict prefix.
DENSE = {
    "attention_fc1": "attention.hidden", "attention_fc2": "attention.score",
    "face_weight1": "fusion.scorers.face.0", "face_weight2": "fusion.scorers.face.2",
    "context_weight1": "fusion.scorers.context.0", "context_weight2": "fusion.scorers.context.2",
    "final_fc1": "fusion.classifier.0", "final_classify": "fusion.classifier.3",
}
BATCHNORMS = {"attention_fc1_bn": "attention.norm"}
BN_FIELDS = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
NUM_BLOCKS = 5


def _is_bookkeeping(name: str) -> bool:
    """Checkpoint entries that are no weight of the network (object graph, counters, optimizer state)."""
    return (name == "_CHECKPOINTABLE_OBJECT_GRAPH" or name.startswith(("save_counter/", "optimizer/"))
            or "/.OPTIMIZER_SLOT/" in name)


def _encoder_layers(model: GLAMORNet, attr: str) -> list[tuple[str, str]]:
    """[(conv prefix, BatchNorm prefix)] of one encoder in forward order, from its state-dict keys.

    Convs are the 4-d ``weight`` entries, BatchNorms the ``running_mean`` owners, so the mapping
    does not depend on how the encoder groups its layers into modules.
    """
    keys = getattr(model, attr).state_dict()
    convs = [k[: -len(".weight")] for k, v in keys.items() if k.endswith(".weight") and v.dim() == 4]
    bns = [k[: -len(".running_mean")] for k in keys if k.endswith(".running_mean")]
    if len(convs) != NUM_BLOCKS or len(bns) != NUM_BLOCKS:
        raise ValueError(f"{attr}: expected {NUM_BLOCKS} conv and BatchNorm layers, found {len(convs)} and {len(bns)}")
    return [(f"{attr}.{c}", f"{attr}.{b}") for c, b in zip(convs, bns)]


def tf_name_map(model: GLAMORNet) -> dict[str, tuple[str, str]]:
    """{TF variable name: (our state-dict key, kind)} with kind in conv_kernel, conv_bias,
    dense_kernel, plain (copied as is). A conv_bias entry's key is the BatchNorm's running_mean."""
    m: dict[str, tuple[str, str]] = {}
    for tf_enc, attr in ENCODERS.items():
        for i, (conv, bn) in enumerate(_encoder_layers(model, attr)):
            base = f"{tf_enc}/blocks/{i}"
            m[f"{base}/conv/kernel{SUFFIX}"] = (f"{conv}.weight", "conv_kernel")
            m[f"{base}/conv/bias{SUFFIX}"] = (f"{bn}.running_mean", "conv_bias")
            for tf_field, field in BN_FIELDS.items():
                m[f"{base}/bn/{tf_field}{SUFFIX}"] = (f"{bn}.{field}", "plain")
    for tf_layer, ours in DENSE.items():
        m[f"{tf_layer}/kernel{SUFFIX}"] = (f"{ours}.weight", "dense_kernel")
        m[f"{tf_layer}/bias{SUFFIX}"] = (f"{ours}.bias", "plain")
    for tf_layer, ours in BATCHNORMS.items():
        for tf_field, field in BN_FIELDS.items():
            m[f"{tf_layer}/{tf_field}{SUFFIX}"] = (f"{ours}.{field}", "plain")
    return m


def _short(names, limit: int = 6) -> str:
    names = sorted(n[: -len(SUFFIX)] if n.endswith(SUFFIX) else n for n in names)
    return ", ".join(names[:limit]) + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


def tf_state_dict(prefix, model: GLAMORNet, verify: bool = True) -> dict[str, torch.Tensor]:
    """The state dict for ``model`` (a ``glamor-net-authors`` GLAMORNet) from the TF checkpoint ``prefix``.

    Raises TFCheckpointError naming the missing and unexpected variables of a checkpoint of
    another network, or a variable whose shape does not fit; unreadable files raise it too.
    """
    index = read_index(prefix)
    where = str(index.path)
    names = tf_name_map(model)
    listed = {n for n in index.entries if not _is_bookkeeping(n)}
    missing, unexpected = set(names) - listed, listed - set(names)
    if missing or unexpected:
        parts = [f"{len(missing)} missing: {_short(missing)}" if missing else "",
                 f"{len(unexpected)} unexpected: {_short(unexpected)}" if unexpected else ""]
        raise TFCheckpointError(f"{where} is not the authors' GLAMOR-Net: variables "
                                + "; ".join(p for p in parts if p))
    arrays = read_variables(prefix, list(names), verify=verify)
    own = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    biases: dict[str, np.ndarray] = {}
    for tf_name, (key, kind) in names.items():
        a = arrays[tf_name]
        if a.dtype != np.float32:
            raise TFCheckpointError(f"{where}: {_short([tf_name])} is {a.dtype}, expected float32")
        if kind == "conv_kernel":
            a = a.transpose(3, 2, 0, 1) if a.ndim == 4 else a
        elif kind == "dense_kernel":
            a = a.T
        if kind == "conv_bias":
            biases[key] = a
            continue
        if tuple(a.shape) != tuple(own[key].shape):
            raise TFCheckpointError(f"{where}: {_short([tf_name])} has shape {tuple(arrays[tf_name].shape)}, which "
                                    f"does not fit {key} {tuple(own[key].shape)} of the authors' GLAMOR-Net")
        state[key] = torch.from_numpy(np.ascontiguousarray(a)).to(own[key].dtype)
    for key, b in biases.items():
        if b.shape != tuple(state[key].shape):
            tf_name = next(n for n, (k, kind) in names.items() if k == key and kind == "conv_bias")
            raise TFCheckpointError(f"{where}: {_short([tf_name])} has shape {b.shape}, which does not fit the "
                                    f"conv's {tuple(state[key].shape)} output channels")
        state[key] = state[key] - torch.from_numpy(b)
    for key, value in own.items():
        if key not in state:                     # num_batches_tracked: TF keeps no count
            state[key] = value.clone()
    return state


def load_tf_checkpoint(prefix: str | os.PathLike, backend: str = "auto", verify: bool = True,
                       num_classes: Optional[int] = None) -> GLAMORNet:
    """The authors' GLAMOR-Net (preset ``glamor-net-authors``) with the weights of the TF checkpoint
    ``prefix`` (``.../Model`` for ``Model.index`` + ``Model.data-*``), in eval mode, on the CPU.

    Input: RGB in [0, 1], face (B, 3, 96, 96), context (B, 3, 112, 112) (NCHW). ``num_classes``
    defaults to the checkpoint's (``final_classify`` width; 7 for the authors'). The model returns
    logits; ``softmax`` of them is the TF model's output. ``verify``: check every tensor's crc32c.
    Raises TFCheckpointError (a ValueError) with a one-line reason.
    """
    if num_classes is None:
        shapes = {n: e.shape for n, e in read_index(prefix).entries.items()}
        shape = shapes.get(f"final_classify/kernel{SUFFIX}")
        num_classes = shape[1] if shape is not None and len(shape) == 2 and shape[1] > 0 else 7
    model = build_model(PRESET, num_classes=num_classes, backend=backend)
    model.load_state_dict(tf_state_dict(prefix, model, verify=verify), strict=True)
    return model.eval()
