"""train(cfg): the whole training run (data, model, resume, epochs, checkpoints, logs, DDP).

Launch on several GPUs/nodes with torchrun; each process calls train(cfg) and only rank 0
writes files. Files in cfg.out_dir: last.pt (every epoch, and on Ctrl-C), best.pt (best
validation accuracy), metrics.csv, metrics.json, config.json.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from .checkpoint import CheckpointError, load_checkpoint, load_model_state, save_checkpoint
from .config import MODEL_FIELDS, TrainConfig
from .data import (build_datasets, eval_loader, resolve_data_root, set_dataset_epoch, train_loader,
                   uses_channels_last)
from .distributed import DistInfo, any_rank, average_buffers, barrier, cleanup_distributed, init_distributed, resolve_device
from .logs import atomic_write_text, write_metric_logs
from .loop import AMP_DTYPES, EpochProgress, StepHook, check_amp, evaluate_loss_acc, forward_batch, train_one_epoch, unwrap
from .optim import build_optimizer, build_scheduler
from .precise_bn import precise_bn_batches, recompute_bn_stats
from .seeding import seed_everything


@dataclass
class TrainResult:
    out_dir: Path
    best_checkpoint: Optional[Path]
    last_checkpoint: Path
    best_metric: float
    best_epoch: int
    class_names: list
    history: list = field(default_factory=list)
    model: Optional[nn.Module] = None  # the final (not best) weights, unwrapped from DDP
    data_root: Optional[Path] = None
    stopped_early: bool = False  # cfg.time_budget_s ended training before cfg.epochs
    early_stopped: bool = False  # cfg.early_stop: validation accuracy stopped improving
    precise_bn_batches: int = 0  # batches each BatchNorm re-estimation used (0: off)


def _say(info: DistInfo, msg: str) -> None:
    if info.is_main:
        print(msg, flush=True)


def _check_resume_compatible(ckpt: dict, cfg: TrainConfig, class_names: list, path) -> None:
    saved = ckpt["config"]
    diff = [f"{k}: checkpoint {saved.get(k)!r} vs now {getattr(cfg, k)!r}"
            for k in MODEL_FIELDS if saved.get(k) != getattr(cfg, k)]
    if diff:
        raise CheckpointError(f"cannot resume from {path}: the model settings differ ({'; '.join(diff)}); "
                              "pass the same --model/--encoder/--gla-hidden/--gla-norm/--dropout")
    if saved.get("optimizer") != cfg.optimizer:
        raise CheckpointError(f"cannot resume from {path}: it was trained with --optimizer {saved.get('optimizer')}, "
                              f"not {cfg.optimizer}")
    if list(ckpt["class_names"]) != list(class_names):
        raise CheckpointError(f"cannot resume from {path}: it was trained on classes {ckpt['class_names']} "
                              f"but the dataset has {class_names}")


def check_gla_backend(cfg: TrainConfig, device: torch.device) -> None:
    """BackendUnavailableError/ValueError when cfg.backend cannot run cfg.model's GLA on ``device``."""
    from glamor_fast.models import PRESETS
    from glamor_fast.ops.registry import choose_backend

    if PRESETS[cfg.model].model_kwargs.get("attention") == "gla":
        choose_backend(cfg.backend, device, AMP_DTYPES.get(cfg.amp, torch.float32))


def train(cfg: TrainConfig, on_step: Optional[StepHook] = None) -> TrainResult:
    """Train cfg.model on cfg's dataset; returns where the checkpoints/logs are and the final model.

    Raises NonFiniteLossError on a NaN/inf loss, CheckpointError for a bad --resume, and
    re-raises KeyboardInterrupt after saving a resumable last.pt.
    """
    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device_type = "cuda" if (cfg.device == "auto" and torch.cuda.is_available()) else cfg.device.split(":")[0]
    info = init_distributed(device_type)
    try:
        return _train(cfg, info, on_step)
    finally:
        cleanup_distributed(info)


def _train(cfg: TrainConfig, info: DistInfo, on_step: Optional[StepHook]) -> TrainResult:
    device = resolve_device(cfg.device, info)
    check_amp(cfg.amp, device)
    check_gla_backend(cfg, device)  # before any data is read or any file written
    if cfg.keep_freed_memory and device.type == "cpu":
        from .allocator import keep_freed_memory

        keep_freed_memory()
    out_dir = Path(cfg.out_dir)
    root = resolve_data_root(cfg, info)
    train_ds, val_ds, val_desc, class_names = build_datasets(root, cfg)
    _say(info, f"data: {root} ({cfg.dataset}{f', from the cache {cfg.cache}' if cfg.cache else ''}), {len(train_ds)} train images, validation on {val_desc}; "
               f"device {device}, world size {info.world_size}")

    seed_everything(cfg.seed)  # identical initial weights on every rank
    from glamor_fast.models import build_model

    model = build_model(cfg.model, num_classes=len(class_names), **cfg.model_overrides()).to(device)
    if cfg.channels_last:  # the convs then write channels_last maps for the fused encoder blocks
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    scaler = torch.amp.GradScaler(device.type) if cfg.amp == "fp16" else None

    start_epoch, start_batch, global_step = 0, 0, 0
    carried = (0.0, 0.0, 0.0)  # train metrics of a resumed epoch's batches before the resume point
    best_metric, best_epoch, history = -1.0, -1, []
    if cfg.resume:
        ckpt = load_checkpoint(cfg.resume, map_location=device)
        _check_resume_compatible(ckpt, cfg, class_names, cfg.resume)
        load_model_state(model, ckpt, f"checkpoint {cfg.resume}")
        try:
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            if scaler is not None and ckpt.get("scaler"):
                scaler.load_state_dict(ckpt["scaler"])
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"cannot resume optimizer/scheduler state from {cfg.resume} "
                                  f"({type(exc).__name__}: {exc}); was it saved with another --optimizer?") from None
        start_epoch, start_batch = int(ckpt["epoch"]), int(ckpt.get("step_in_epoch", 0))
        if start_batch and ckpt.get("epoch_partial") and info.world_size == 1:
            carried = tuple(float(v) for v in ckpt["epoch_partial"])
        global_step = int(ckpt.get("global_step", 0))
        best_metric, best_epoch = float(ckpt.get("best_metric", -1.0)), int(ckpt.get("best_epoch", -1))
        history = list(ckpt.get("history", []))
        _say(info, f"resumed from {cfg.resume}: {start_epoch} epochs done"
                   + (f", {start_batch} batches into epoch {start_epoch + 1}" if start_batch else ""))

    if info.enabled:
        ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    pin = device.type == "cuda"
    loader = train_loader(train_ds, cfg, info, pin_memory=pin, device=device,
                          channels_last=uses_channels_last(unwrap(model)))
    val_loader = eval_loader(val_ds, cfg.batch_size, info, cfg.num_workers, pin_memory=pin, persistent=True)
    progress = EpochProgress(epoch=start_epoch, batches_done=start_batch, global_step=global_step)
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "config.json", json.dumps(cfg.to_dict(), indent=2))

    def payload(epochs_done: int, step_in_epoch: int) -> dict:
        return {
            "model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler else None,
            "epoch": epochs_done, "step_in_epoch": step_in_epoch, "global_step": progress.global_step,
            "config": cfg.to_dict(), "class_names": list(class_names), "best_metric": best_metric,
            "best_epoch": best_epoch, "history": history, "data_root": str(root),
            # the interrupted epoch's running train metrics; exact for one process (rank 0's share under DDP)
            "epoch_partial": list(progress.partial) if step_in_epoch and info.world_size == 1 else None,
        }

    n_precise = precise_bn_batches(cfg.precise_bn, unwrap(model))
    if n_precise:
        _say(info, f"precise BatchNorm: statistics re-estimated over {n_precise} training batches before each "
                   "evaluation" + (" (auto: a BatchNorm momentum makes them lag)" if cfg.precise_bn is None else ""))

    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    epoch, epoch_trained, stopped_early, early_stopped = start_epoch, False, False, False
    t_start = time.perf_counter()
    try:
        for epoch in range(start_epoch, cfg.epochs):
            skip = start_batch if epoch == start_epoch else 0
            progress.epoch, progress.batches_done, epoch_trained = epoch, skip, False
            loader.sampler.set_epoch(epoch, skip=skip * cfg.batch_size)
            set_dataset_epoch(train_ds, epoch)
            seed_everything(cfg.seed, epoch, info.rank, skip)
            t0 = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            stats = train_one_epoch(model, loader, optimizer, scaler, cfg, device, info, progress, skip, on_step,
                                    carried if epoch == start_epoch else (0.0, 0.0, 0.0))
            scheduler.step()
            if n_precise:
                loader.sampler.set_epoch(epoch)  # this epoch's batches, from its first one
                recompute_bn_stats(unwrap(model), loader, n_precise,
                                   lambda m, batch: forward_batch(m, batch, device, cfg.amp))
            average_buffers(unwrap(model), info)
            epoch_trained = True
            stats.update(evaluate_loss_acc(model, val_loader, device, cfg.amp, info))
            row = {"epoch": epoch + 1, "lr": lr, **stats, "time_s": round(time.perf_counter() - t0, 3)}
            history.append(row)
            improved = stats["val_acc"] > best_metric
            if improved:
                best_metric, best_epoch = stats["val_acc"], epoch + 1
            if info.is_main:
                save_checkpoint(last_path, payload(epoch + 1, 0))
                if improved:
                    save_checkpoint(best_path, payload(epoch + 1, 0))
                write_metric_logs(out_dir, history, {"best_val_acc": best_metric, "best_epoch": best_epoch,
                                                     "config": cfg.to_dict(), "class_names": class_names})
            _say(info, f"epoch {epoch + 1}/{cfg.epochs}: loss {stats['train_loss']:.4f} "
                       f"train acc {stats['train_acc']:.3f} val loss {stats['val_loss']:.4f} "
                       f"val acc {stats['val_acc']:.3f} lr {lr:.2e} ({row['time_s']:.1f}s)"
                       + (" *best*" if improved else ""))
            barrier(info)
            if cfg.early_stop is not None and epoch + 1 - best_epoch >= cfg.early_stop and epoch + 1 < cfg.epochs:
                early_stopped = True
                _say(info, f"stopping after epoch {epoch + 1} of {cfg.epochs}: no better validation accuracy for "
                           f"{cfg.early_stop} epochs (--early-stop; best {best_metric:.4f} at epoch {best_epoch})")
                break
            if cfg.time_budget_s is not None and epoch + 1 < cfg.epochs:
                elapsed = time.perf_counter() - t_start
                want = elapsed + elapsed / (epoch + 1 - start_epoch) > cfg.time_budget_s
                if any_rank(want and info.is_main, info, device):  # rank 0's clock decides for all ranks
                    stopped_early = True
                    _say(info, f"stopping after epoch {epoch + 1} of {cfg.epochs}: another epoch would pass "
                               f"the time budget of {cfg.time_budget_s:.0f}s ({elapsed:.0f}s used)")
                    break
    except KeyboardInterrupt:
        if info.is_main:
            # After the scheduler step the epoch's training is complete: resume at the next one.
            done, batches = (epoch + 1, 0) if epoch_trained else (epoch, progress.batches_done)
            save_checkpoint(last_path, payload(done, batches))
            print(f"\ninterrupted in epoch {epoch + 1} after {progress.batches_done} batches; saved a "
                  f"resumable checkpoint to {last_path} (continue with --resume {last_path})", flush=True)
        raise
    return TrainResult(out_dir=out_dir, best_checkpoint=best_path if best_epoch > 0 else None,
                       last_checkpoint=last_path, best_metric=best_metric, best_epoch=best_epoch,
                       class_names=list(class_names), history=history, model=unwrap(model), data_root=root,
                       stopped_early=stopped_early, early_stopped=early_stopped, precise_bn_batches=n_precise)
