"""One training epoch and one evaluation pass (the inner loops, no file I/O)."""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .config import TrainConfig
from .distributed import DistInfo, all_reduce_sum, any_rank

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the message names the step and the batch's image files."""


def check_amp(amp: str, device: torch.device) -> None:
    """Clear error when the device cannot run the requested mixed precision."""
    if amp == "none":
        return
    if amp == "fp16" and device.type != "cuda":
        raise ValueError(f"--amp fp16 needs a CUDA device (got {device}); use --amp bf16 on the CPU")
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"--amp bf16: {torch.cuda.get_device_name(device)} has no bfloat16 support; use --amp fp16")


def autocast(amp: str, device: torch.device):
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def forward_batch(model: nn.Module, batch: dict, device: torch.device, amp: str):
    """-> (logits (B, C) float32, labels (B,) int64) for a collated dataset batch."""
    face = batch["face"].to(device, non_blocking=True)
    context = batch["context"].to(device, non_blocking=True)
    labels = torch.as_tensor(batch["label"]).to(device, non_blocking=True)
    with autocast(amp, device):
        logits = model(face, context)
    return logits.float(), labels


@dataclass
class EpochProgress:
    """Where training stands; updated after every optimizer step (read by the Ctrl-C handler)."""

    epoch: int = 0
    batches_done: int = 0   # batches of this epoch folded into an optimizer step
    global_step: int = 0    # optimizer steps since the start of training
    # (loss sum, correct, samples) of this epoch's batches up to batches_done, on this rank: saved in
    # a Ctrl-C checkpoint so that the resumed epoch's metrics row covers the whole epoch
    partial: tuple = (0.0, 0.0, 0.0)


StepHook = Callable[[EpochProgress, float, nn.Module], None]


def train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer,
                    scaler: Optional[torch.amp.GradScaler], cfg: TrainConfig, device: torch.device,
                    info: DistInfo, progress: EpochProgress, start_batch: int = 0,
                    on_step: Optional[StepHook] = None, carried: tuple = (0.0, 0.0, 0.0)) -> dict:
    """Train over ``loader`` (already positioned at ``start_batch``); returns train_loss, train_acc.

    ``carried``: (loss sum, correct, samples) of the batches before ``start_batch`` (a resumed
    epoch), added in so that the returned metrics cover the whole epoch.

    Gradient accumulation: an optimizer step every cfg.accum_steps batches (and at the end of
    the epoch); each batch's loss is divided by the size of its accumulation group, so a short
    last group is not under-weighted. Under DDP, gradients are synchronised only on the last
    batch of a group (no_sync on the others).
    """
    model.train()
    n_total = start_batch + len(loader)
    if cfg.max_batches_per_epoch is not None:
        n_total = min(n_total, cfg.max_batches_per_epoch)
    accum = cfg.accum_steps
    loss_sum, correct, count = (float(v) for v in carried)
    progress.partial = (loss_sum, correct, count)
    bar = tqdm(total=n_total, initial=start_batch, desc=f"epoch {progress.epoch + 1}/{cfg.epochs}",
               disable=not (cfg.progress and info.is_main), leave=False, dynamic_ncols=True)
    optimizer.zero_grad(set_to_none=True)
    try:
        for i, batch in enumerate(loader, start=start_batch):
            if i >= n_total:
                break
            group_start = (i // accum) * accum
            group_size = min(accum, n_total - group_start)
            last_in_group = i == group_start + group_size - 1
            sync = contextlib.nullcontext()
            if info.enabled and not last_in_group:
                sync = model.no_sync()
            with sync:
                logits, labels = forward_batch(model, batch, device, cfg.amp)
                loss = F.cross_entropy(logits, labels, label_smoothing=cfg.label_smoothing)
                if any_rank(not bool(torch.isfinite(loss.detach())), info, device):
                    files = list(batch.get("path", []))
                    raise NonFiniteLossError(
                        f"non-finite loss ({loss.item()}) on rank {info.rank} at epoch {progress.epoch + 1}, "
                        f"batch {i + 1} (optimizer step {progress.global_step + 1}); the batch's files: "
                        f"{', '.join(map(str, files)) or '(no paths in batch)'}. "
                        "Try a lower --lr, --grad-clip, or --amp none."
                    )
                scaled = loss / group_size
                if scaler is not None:
                    scaler.scale(scaled).backward()
                else:
                    scaled.backward()
            bs = labels.shape[0]
            loss_sum += loss.item() * bs
            correct += (logits.argmax(1) == labels).sum().item()
            count += bs
            bar.update(1)
            if not last_in_group:
                continue
            if cfg.grad_clip is not None:
                if scaler is not None:
                    scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            progress.batches_done = i + 1
            progress.global_step += 1
            progress.partial = (loss_sum, correct, count)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if on_step is not None:
                on_step(progress, loss.item(), model)
    finally:
        bar.close()
    loss_sum, correct, count = all_reduce_sum([loss_sum, correct, count], info, device)
    return {"train_loss": loss_sum / max(count, 1), "train_acc": correct / max(count, 1),
            "train_samples": int(count)}


@torch.no_grad()
def evaluate_loss_acc(model: nn.Module, loader, device: torch.device, amp: str, info: DistInfo,
                      desc: str = "val", show_progress: bool = False) -> dict:
    """Mean loss and accuracy over ``loader`` (summed over ranks): val_loss, val_acc."""
    model = unwrap(model).eval()
    loss_sum = correct = count = 0.0
    for batch in tqdm(loader, desc=desc, disable=not (show_progress and info.is_main), leave=False):
        logits, labels = forward_batch(model, batch, device, amp)
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(1) == labels).sum().item()
        count += labels.shape[0]
    loss_sum, correct, count = all_reduce_sum([loss_sum, correct, count], info, device)
    loss = loss_sum / count if count else math.nan
    return {"val_loss": loss, "val_acc": correct / count if count else math.nan}


@torch.no_grad()
def collect_predictions(model: nn.Module, loader, device: torch.device, amp: str = "none",
                        show_progress: bool = False, desc: str = "eval") -> dict:
    """Single-process pass keeping everything: probs (N, C) float32, labels (N,), paths (N,)."""
    model = unwrap(model).eval()
    probs, labels, paths = [], [], []
    for batch in tqdm(loader, desc=desc, disable=not show_progress, leave=False):
        logits, y = forward_batch(model, batch, device, amp)
        probs.append(torch.softmax(logits, 1).cpu())
        labels.append(y.cpu())
        paths.extend(batch.get("path", []))
    return {"probs": torch.cat(probs) if probs else torch.empty(0, 0),
            "labels": torch.cat(labels) if labels else torch.empty(0, dtype=torch.long),
            "paths": paths}
