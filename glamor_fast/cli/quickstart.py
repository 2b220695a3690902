"""``glamor-fast quickstart`` (= ``glamor-fast`` with no command): the README's main job.

Generates the built-in dataset (./data/builtin), trains GLAMOR-Net on it with the fastest GLA
backend available (backend="auto"), evaluates the best-validation checkpoint on the test split
and writes into runs/quickstart/: best.pt, last.pt, metrics.csv/json (per epoch),
eval_test.json, confusion_matrix_test.png, figures/attention_maps.png (Figure 5 style),
figures/predictions.png (Figure 6 style) and summary.json; prints the test accuracy and chance.

The quick-start recipe differs from the paper's 60-epoch SGD schedule (see QUICK_RECIPE): it
must finish in under 10 minutes on a 2-core CPU, so it trains few epochs with AdamW and a
cosine schedule, which reaches a usable accuracy in far fewer steps than SGD at lr 5e-4; a
time budget ends training early on a slow or busy machine (the summary says so when it does).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from glamor_fast.cli.errors import run_reporting_errors
from glamor_fast.cli.progress import add_progress_argument, show_progress
from glamor_fast.training import TrainConfig, train
from glamor_fast.training.logs import atomic_write_text

# The quick-start training recipe (also the ablation's): every value is a flag of both commands.
QUICK_RECIPE = dict(
    epochs=10,
    batch_size=32,
    optimizer="adamw",
    lr=1e-3,
    weight_decay=1e-4,
    scheduler="cosine",
    warmup_epochs=0,
    val_fraction=0.1,
    threads=None,  # PyTorch's default: the machine's cores
)
TRAIN_TIME_BUDGET_S = 420.0  # 7 minutes of training leaves room for data, evaluation and figures


def add_recipe_arguments(parser: argparse.ArgumentParser, out_dir: str, recipe: dict = QUICK_RECIPE,
                         seed: bool = True) -> None:
    """The recipe's flags with ``recipe``'s values as defaults (``seed``: also --seed)."""
    r = recipe
    parser.add_argument("--data-root", default="data/builtin",
                        help="built-in dataset folder, generated if absent (default %(default)s)")
    parser.add_argument("--num-train", type=int, default=None, help="built-in train images (default: its default, 1200)")
    parser.add_argument("--num-test", type=int, default=None, help="built-in test images (default: its default, 400)")
    parser.add_argument("--out-dir", default=out_dir, help="default %(default)s")
    parser.add_argument("--epochs", type=int, default=r["epochs"], help="default %(default)s")
    parser.add_argument("--batch-size", type=int, default=r["batch_size"], help="default %(default)s")
    parser.add_argument("--optimizer", default=r["optimizer"], choices=["sgd", "adamw"], help="default %(default)s")
    parser.add_argument("--lr", type=float, default=r["lr"], help="default %(default)s")
    parser.add_argument("--weight-decay", type=float, default=r["weight_decay"], help="default %(default)s")
    parser.add_argument("--scheduler", default=r["scheduler"], choices=["step", "cosine", "none"],
                        help="default %(default)s")
    parser.add_argument("--warmup-epochs", type=int, default=r["warmup_epochs"], help="linear warm-up (default %(default)s)")
    parser.add_argument("--early-stop", type=int, default=r.get("early_stop"), metavar="EPOCHS",
                        help="stop when the validation accuracy has not improved for this many epochs "
                             "(default: %(default)s)")
    parser.add_argument("--val-fraction", type=float, default=r["val_fraction"], help="default %(default)s")
    parser.add_argument("--threads", type=int, default=r["threads"],
                        help="torch threads (default: PyTorch's, i.e. the machine's cores)")
    parser.add_argument("--backend", default="auto", help="GLA backend (default %(default)s)")
    parser.add_argument("--device", default="auto", help="default %(default)s")
    if seed:
        parser.add_argument("--seed", type=int, default=0, help="default %(default)s")
    add_progress_argument(parser)


def recipe_config(args: argparse.Namespace, model: str, out_dir, time_budget_s=None, **more) -> TrainConfig:
    """The TrainConfig of the recipe flags; ``more``: other TrainConfig fields (seed, cache, ...)."""
    return TrainConfig(**{
        "model": model, "backend": args.backend, "dataset": "builtin", "data_root": args.data_root,
        "builtin_train": args.num_train, "builtin_test": args.num_test, "val_fraction": args.val_fraction,
        "epochs": args.epochs, "batch_size": args.batch_size, "optimizer": args.optimizer, "lr": args.lr,
        "weight_decay": args.weight_decay, "scheduler": args.scheduler, "warmup_epochs": args.warmup_epochs,
        "early_stop": args.early_stop, "seed": getattr(args, "seed", 0), "device": args.device,
        "threads": args.threads, "out_dir": str(out_dir), "progress": show_progress(args.progress),
        "time_budget_s": time_budget_s, **more})


def quickstart(args: argparse.Namespace) -> dict:
    """Run the main job; returns the summary dict (also written to <out-dir>/summary.json)."""
    from glamor_fast.evaluate import evaluate_checkpoint
    from glamor_fast.ops.registry import choose_backend
    from glamor_fast.training.data import resolve_data_root
    from glamor_fast.training.distributed import DistInfo, resolve_device
    from glamor_fast.visualize import visualize

    t0 = time.perf_counter()
    out = Path(args.out_dir)
    cfg = recipe_config(args, "glamor-net", out, args.time_budget)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device, DistInfo())
    backend = choose_backend(args.backend, device, torch.float32)  # what the model's backend="auto" runs
    print(f"[1/4] built-in dataset in {args.data_root} ...", flush=True)
    root = resolve_data_root(cfg)
    t_data = time.perf_counter() - t0
    print(f"      ready ({t_data:.1f}s)\n[2/4] training GLAMOR-Net on {device} ({torch.get_num_threads()} threads, "
          f"GLA backend {backend}; {cfg.optimizer} lr {cfg.lr}, {cfg.scheduler}, {cfg.epochs} epochs, "
          f"batch {cfg.batch_size}) ...", flush=True)
    result = train(cfg)
    t_train = time.perf_counter() - t0 - t_data
    print(f"[3/4] evaluating {result.best_checkpoint} on the test split ...", flush=True)
    metrics = evaluate_checkpoint(result.best_checkpoint, split="test", out_dir=str(out), progress=cfg.progress,
                                  verbose=True)
    print("[4/4] attention-map and prediction figures ...", flush=True)
    figures = visualize([result.best_checkpoint], out / "figures", split="test", num=7, seed=args.seed)
    wall = time.perf_counter() - t0
    summary = {
        "test_accuracy": metrics["accuracy"], "chance": metrics["chance"], "test_images": metrics["n"],
        "best_val_accuracy": result.best_metric, "best_epoch": result.best_epoch,
        "epochs_run": len(result.history), "stopped_early_by_time_budget": result.stopped_early,
        "gla_backend": backend, "device": str(device), "wall_time_s": round(wall, 1), "train_time_s": round(t_train, 1),
        "torch_threads": torch.get_num_threads(), "data_root": str(root),
        "checkpoint": str(result.best_checkpoint), "confusion_matrix_png": metrics["confusion_png"],
        "figures": {k: str(v) for k, v in figures.items()}, "config": cfg.to_dict(),
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    print(f"\nGLAMOR-Net on the built-in test set: accuracy {metrics['accuracy']:.3f} "
          f"(chance {metrics['chance']:.3f}); {len(result.history)} epochs"
          + (" (stopped early by the time budget)" if result.stopped_early else "")
          + f"; total {wall / 60:.1f} min. Outputs in {out}/", flush=True)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser, "runs/quickstart")
    parser.add_argument("--time-budget", type=float, default=TRAIN_TIME_BUDGET_S,
                        help="seconds of training after which no new epoch starts (default %(default)s)")


def main(args: argparse.Namespace) -> int:
    return run_reporting_errors("quickstart", quickstart, args)
