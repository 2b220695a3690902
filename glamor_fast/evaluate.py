"""``glamor-fast eval``: accuracy, per-class accuracy and the confusion matrix of a checkpoint.

Writes <out-dir>/eval_<split>.json and <out-dir>/confusion_matrix_<split>.png (out-dir defaults
to the checkpoint's folder) and prints the matrix.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from glamor_fast.predict.csv_records import CsvRecords
from glamor_fast.training.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from glamor_fast.training.config import TrainConfig
from glamor_fast.training.data import eval_loader, make_dataset, resolve_data_root
from glamor_fast.training.distributed import DistInfo, resolve_device
from glamor_fast.training.logs import atomic_savefig, atomic_write_text, check_writable_dir, check_writable_file
from glamor_fast.training.loop import check_amp, collect_predictions


def confusion_matrix(labels: torch.Tensor, preds: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) int64 counts; row = true class, column = predicted class."""
    labels, preds = labels.long().reshape(-1), preds.long().reshape(-1)
    if labels.shape != preds.shape:
        raise ValueError(f"confusion_matrix: labels {tuple(labels.shape)} and preds {tuple(preds.shape)} differ")
    flat = labels * num_classes + preds
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def classification_metrics(probs: torch.Tensor, labels: torch.Tensor, class_names: list) -> dict:
    """accuracy, per_class_accuracy {class: acc, None if the class has no samples}, confusion, n."""
    preds = probs.argmax(1)
    cm = confusion_matrix(labels, preds, len(class_names))
    support = cm.sum(1)
    per_class = {name: (cm[i, i].item() / support[i].item() if support[i] > 0 else None)
                 for i, name in enumerate(class_names)}
    n = int(labels.numel())
    return {"accuracy": (preds == labels).float().mean().item() if n else float("nan"),
            "per_class_accuracy": per_class, "confusion": cm.tolist(), "support": support.tolist(),
            "n": n, "chance": 1.0 / len(class_names)}


def format_confusion(cm, class_names: list) -> str:
    """The confusion matrix as an aligned text table (rows true, columns predicted)."""
    short = [n[:8] for n in class_names]
    width = max(9, max(len(str(v)) for row in cm for v in row) + 1)
    lines = ["true \\ pred".ljust(12) + "".join(s.rjust(width) for s in short)]
    for name, row in zip(short, cm):
        lines.append(name.ljust(12) + "".join(str(v).rjust(width) for v in row))
    return "\n".join(lines)


def plot_confusion_matrix(cm, class_names: list, path, title: str = "Confusion matrix") -> Path:
    """Row-normalised colours with the counts written in each cell, saved as PNG (Agg, no pyplot)."""
    from matplotlib.figure import Figure

    cm_t = torch.as_tensor(cm, dtype=torch.float64)
    norm = cm_t / cm_t.sum(1, keepdim=True).clamp_min(1)
    fig = Figure(figsize=(6.5, 5.5), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ticks = range(len(class_names))
    ax.set_xticks(list(ticks), labels=class_names, rotation=45, ha="right")
    ax.set_yticks(list(ticks), labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in ticks:
        for j in ticks:
            ax.text(j, i, int(cm_t[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    return atomic_savefig(fig, path)


def evaluate_checkpoint(checkpoint, data_root: Optional[str] = None, dataset: Optional[str] = None,
                        split: str = "test", batch_size: int = 64, device: str = "auto",
                        backend: Optional[str] = None, out_dir: Optional[str] = None, amp: str = "none",
                        num_workers: Optional[int] = 0, progress: bool = True, verbose: bool = True,
                        cache: Optional[str] = None, predictions: Optional[str] = None,
                        no_box: Optional[str] = None, skip_bad: bool = False, csv: Optional[str] = None) -> dict:
    """Evaluate ``checkpoint`` on ``split`` of its dataset (or ``data_root``); returns the metrics dict.

    The dataset settings (face visible in context, normalisation, no-box policy) come from the
    checkpoint's config. ``cache``: read a prepared cache instead of decoding the images (the
    tensors are bit-identical). ``predictions``: also write per-image JSON lines there; ``csv``:
    the same records as CSV (columns source, label, emotion, probs_<class>, as predict --csv). Every output path is
    checked before the evaluation, and the results are printed (``verbose``) before any file is
    written. ``skip_bad`` leaves out images that cannot be decoded (logged with a count) instead of failing.
    """
    ckpt = load_checkpoint(checkpoint)
    out = check_writable_dir(out_dir if out_dir else Path(checkpoint).parent,
                             "--out-dir" if out_dir else "the checkpoint's folder (the default --out-dir)")
    for path, flag in ((predictions, "--predictions"), (csv, "--csv")):
        if path:
            check_writable_file(path, f"{flag} {path}")
    cfg = TrainConfig.from_dict(ckpt["config"])
    cfg.skip_bad = skip_bad
    if dataset is not None:
        cfg.dataset = dataset
    cfg.cache = cache
    if no_box is not None:
        cfg.no_box = no_box
    if data_root is not None:
        cfg.data_root = data_root
    elif cache is not None:
        cfg.data_root = None  # the cache's own record of where its sources are
    elif ckpt.get("data_root"):
        cfg.data_root = ckpt["data_root"]
    root = resolve_data_root(cfg, generate=False)
    ds = make_dataset(root, split, cfg, train=False)
    class_names = list(ckpt["class_names"])
    if list(ds.classes) != class_names:
        raise CheckpointError(f"{checkpoint} was trained on classes {class_names} but {root}/{split} has {list(ds.classes)}")
    dev = resolve_device(device, DistInfo())
    check_amp(amp, dev)
    model = model_from_checkpoint(ckpt, backend=backend, device=dev, where=f"checkpoint {checkpoint}")
    preds = collect_predictions(model, eval_loader(ds, batch_size, num_workers=num_workers), dev, amp,
                                show_progress=progress, desc=f"eval {split}")
    metrics = classification_metrics(preds["probs"], preds["labels"], class_names)
    metrics.update({"checkpoint": str(checkpoint), "data_root": str(root), "split": split,
                    "model": cfg.model, "epoch": int(ckpt["epoch"])})
    if verbose:  # the results first: they are not lost if writing the files fails
        print(format_report(metrics, class_names), flush=True)
    records = prediction_records(preds, root, class_names) if (predictions or csv) else []
    if predictions:
        atomic_write_text(Path(predictions), "".join(json.dumps(r) + "\n" for r in records))
    if csv:  # the same CSV writer and columns as predict --csv
        table = CsvRecords(Path(csv), ["source", "label", "emotion", "probs"], {"probs": class_names}, {})
        for record in records:
            table.write(record)
        table.close()
    metrics["confusion_png"] = str(plot_confusion_matrix(
        metrics["confusion"], class_names, out / f"confusion_matrix_{split}.png",
        f"{cfg.model} on {split}: accuracy {metrics['accuracy']:.3f}"))
    atomic_write_text(out / f"eval_{split}.json", json.dumps(metrics, indent=2))
    if verbose:
        print(f"saved {metrics['confusion_png']} and {out / f'eval_{split}.json'}")
    return metrics


def prediction_records(preds: dict, root: Path, class_names: list) -> list[dict]:
    """One dict per image: {"source": absolute path, "label": true class, "emotion": predicted class,
    "probs": {class: probability}} (the --predictions JSON lines and the --csv rows)."""
    root = Path(root).resolve()
    return [{"source": str(root / rel), "label": class_names[label],
             "emotion": class_names[max(range(len(p)), key=p.__getitem__)], "probs": dict(zip(class_names, p))}
            for rel, label, p in zip(preds["paths"], preds["labels"].tolist(), preds["probs"].tolist())]


def format_report(metrics: dict, class_names: list) -> str:
    lines = [f"{metrics.get('model', 'model')} on {metrics.get('split', '?')} ({metrics['n']} images): "
             f"accuracy {metrics['accuracy']:.4f} (chance {metrics['chance']:.4f})", "per-class accuracy:"]
    for name, acc in metrics["per_class_accuracy"].items():
        lines.append(f"  {name:<10} {'n/a' if acc is None else f'{acc:.4f}'}")
    lines += ["confusion matrix (rows true, columns predicted):", format_confusion(metrics["confusion"], class_names)]
    if "confusion_png" in metrics:
        lines.append(f"saved {metrics['confusion_png']}")
    return "\n".join(lines)
