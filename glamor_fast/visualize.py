"""``glamor-fast visualize``: the paper's Figure 5 (attention maps) and a Figure-6-like prediction grid.

Figure 5 (attention_maps.png): one column per sample; rows are the original image, the
context image the model sees (face masked, resized and centre-cropped), then for every GLA/CA
checkpoint its attention map (upsampled bilinearly from the context feature grid, e.g. 7x7)
overlaid on that context image.
Figure 6 (predictions.png): one column per ground-truth class, one row per checkpoint; each
cell shows the image with the predicted emotion, green when right, red when wrong.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np
import torch
from torch import nn

from glamor_fast.training.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from glamor_fast.training.config import TrainConfig
from glamor_fast.training.data import make_dataset, resolve_data_root
from glamor_fast.training.distributed import DistInfo, resolve_device
from glamor_fast.training.logs import atomic_savefig, check_writable_dir

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@dataclass
class LoadedModel:
    name: str
    model: nn.Module
    dataset: object          # the eval dataset built with this checkpoint's data settings
    attention: str           # "gla", "ca" or "none"
    normalize: bool


def load_for_visualization(checkpoint, split: str = "test", data_root: Optional[str] = None,
                           device="cpu", backend: Optional[str] = None, dataset: Optional[str] = None) -> LoadedModel:
    ckpt = load_checkpoint(checkpoint)
    cfg = TrainConfig.from_dict(ckpt["config"])
    cfg.data_root = data_root or ckpt.get("data_root") or cfg.data_root
    cfg.dataset = dataset or cfg.dataset
    ds = make_dataset(resolve_data_root(cfg, generate=False), split, cfg, train=False)
    model = model_from_checkpoint(ckpt, backend=backend, device=device, where=f"checkpoint {checkpoint}")
    return LoadedModel(f"{cfg.model} ({Path(checkpoint).parent.name})", model, ds, model.attention_kind, cfg.normalize)


def to_display(chw: torch.Tensor, normalized: bool) -> np.ndarray:
    """(3, H, W) float tensor in [0, 1] (or ImageNet-normalised) -> (H, W, 3) float in [0, 1]."""
    img = chw.detach().float().cpu().numpy().transpose(1, 2, 0)
    if normalized:
        img = img * IMAGENET_STD + IMAGENET_MEAN
    return np.clip(img, 0.0, 1.0)


def overlay_attention(image: np.ndarray, attn: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a jet-coloured attention map (h, w), upsampled to the image (H, W, 3) in [0, 1]."""
    from matplotlib import colormaps

    h, w = image.shape[:2]
    a = cv2.resize(attn.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    a = (a - a.min()) / max(float(a.max() - a.min()), 1e-12)
    heat = colormaps["jet"](a)[..., :3]
    return np.clip((1 - alpha) * image + alpha * heat, 0.0, 1.0)


@torch.no_grad()
def run_model(lm: LoadedModel, indices: Sequence[int], device) -> tuple[torch.Tensor, Optional[torch.Tensor], list]:
    """-> (probs (n, C), attn (n, h, w) or None, items) for dataset items ``indices``."""
    items = [lm.dataset[i] for i in indices]
    face = torch.stack([it["face"] for it in items]).to(device)
    context = torch.stack([it["context"] for it in items]).to(device)
    logits, attn, _ = lm.model(face, context, return_details=True)
    return torch.softmax(logits.float(), 1).cpu(), (None if attn is None else attn.float().cpu()), items


def pick_indices(labels: Sequence[int], num: int, num_classes: int, seed: int = 0) -> list[int]:
    """``num`` indices cycling through the classes (class k, k+1, ...), seeded choice within a class."""
    rng = np.random.default_rng(seed)
    by_class = [rng.permutation([i for i, y in enumerate(labels) if y == c]).tolist() for c in range(num_classes)]
    out, k = [], 0
    while len(out) < num and any(by_class):
        if by_class[k % num_classes]:
            out.append(by_class[k % num_classes].pop(0))
        k += 1
    return out


def figure5(models: Sequence[LoadedModel], indices: Sequence[int], path, device="cpu") -> Path:
    """Original image / masked context / attention overlay per attention model; saved as PNG."""
    from matplotlib.figure import Figure

    att_models = [m for m in models if m.attention in ("gla", "ca")]
    if not att_models:
        raise ValueError("figure 5 needs at least one checkpoint with attention 'gla' or 'ca' "
                         f"(got {[m.name for m in models]} with attention {[m.attention for m in models]})")
    ref = att_models[0]
    rows = 2 + len(att_models)
    fig = Figure(figsize=(1.9 * len(indices), 1.9 * rows + 0.3), dpi=110)
    axes = fig.subplots(rows, len(indices), squeeze=False)
    originals = [ref.dataset.load_image(i) for i in indices]
    outputs = [run_model(m, indices, device) for m in att_models]
    classes = list(ref.dataset.classes)
    for col, idx in enumerate(indices):
        label = ref.dataset.samples[idx][1]
        axes[0, col].imshow(originals[col])
        axes[0, col].set_title(f"true: {classes[label]}", fontsize=8)
        masked = to_display(outputs[0][2][col]["context"], ref.normalize)
        axes[1, col].imshow(masked)
        for r, (m, (probs, attn, items)) in enumerate(zip(att_models, outputs), start=2):
            ctx = to_display(items[col]["context"], m.normalize)
            axes[r, col].imshow(overlay_attention(ctx, attn[col].numpy()))
            pred = int(probs[col].argmax())
            axes[r, col].set_title(f"pred: {classes[pred]}", fontsize=8, color="green" if pred == label else "red")
    row_names = ["original", "masked face"] + [f"{m.attention.upper()}: {m.name}" for m in att_models]
    for r, name in enumerate(row_names):
        axes[r, 0].set_ylabel(name, fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Attention maps (Figure 5 style)", fontsize=10)
    fig.tight_layout()
    return atomic_savefig(fig, path)


def figure6(models: Sequence[LoadedModel], indices: Sequence[int], path, device="cpu") -> Path:
    """Prediction grid: columns = samples (ground truth on top), rows = checkpoints; saved as PNG."""
    from matplotlib.figure import Figure

    ref = models[0]
    classes = list(ref.dataset.classes)
    fig = Figure(figsize=(1.9 * len(indices), 2.1 * len(models) + 0.4), dpi=110)
    axes = fig.subplots(len(models), len(indices), squeeze=False)
    originals = [ref.dataset.load_image(i) for i in indices]
    for r, m in enumerate(models):
        probs, _, _ = run_model(m, indices, device)
        for col, idx in enumerate(indices):
            label = ref.dataset.samples[idx][1]
            pred = int(probs[col].argmax())
            ax = axes[r, col]
            ax.imshow(originals[col])
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"{classes[pred]} ({probs[col, pred]:.2f})", fontsize=8,
                          color="green" if pred == label else "red")
            if r == 0:
                ax.set_title(f"({chr(97 + col)}) {classes[label]}", fontsize=8)
        axes[r, 0].set_ylabel(m.name, fontsize=7)
    fig.suptitle("Predictions (green: right, red: wrong); column titles: ground truth", fontsize=10)
    fig.tight_layout()
    return atomic_savefig(fig, path)


def visualize(checkpoints: Sequence, out_dir, split: str = "test", num: int = 7, seed: int = 0,
              data_root: Optional[str] = None, device: str = "auto", backend: Optional[str] = None,
              dataset: Optional[str] = None) -> dict:
    """Write attention_maps.png (if any checkpoint has GLA/CA) and predictions.png; returns their paths."""
    if not checkpoints:
        raise ValueError("visualize: give at least one checkpoint")
    out_dir = check_writable_dir(out_dir)
    dev = resolve_device(device, DistInfo())
    models = [load_for_visualization(c, split, data_root, dev, backend, dataset) for c in checkpoints]
    ref = models[0].dataset
    if any(len(m.dataset) != len(ref) for m in models):
        raise ValueError("visualize: the checkpoints' datasets differ in size; pass --data-root to use one dataset")
    labels = [y for _, y in ref.samples]
    ncls = len(ref.classes)
    written = {}
    # Figure 6: one column per ground-truth class, as in the paper.
    written["predictions"] = figure6(models, pick_indices(labels, ncls, ncls, seed), out_dir / "predictions.png", dev)
    if any(m.attention in ("gla", "ca") for m in models):
        written["attention_maps"] = figure5(models, pick_indices(labels, num, ncls, seed + 1),
                                            out_dir / "attention_maps.png", dev)
    return written
