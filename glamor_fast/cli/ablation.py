"""``glamor-fast ablation``: the paper's Table 2 on the built-in dataset, as a Markdown table.

Trains every setting with the quick-start recipe (glamor_fast.cli.quickstart.QUICK_RECIPE; the
number of epochs is --epochs), evaluates its best-validation checkpoint on the test split and
writes runs/ablation/ablation.md and ablation.json. Each setting's run lives in
runs/ablation/<preset>/; a finished setting (its result.json, same recipe) is reused, so an
interrupted ablation continues where it stopped (--force retrains).

Settings (paper notation): (i) w/F; (ii) w/mC, w/mC + CA, w/mC + GLA; (iii) w/fC, w/fC + CA,
w/fC + GLA; (iv) w/F + mC, w/F + mC + CA, w/F + mC + GLA (GLAMOR-Net).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from glamor_fast.cli.errors import run_reporting_errors
from glamor_fast.cli.quickstart import add_recipe_arguments, recipe_config
from glamor_fast.training import train
from glamor_fast.training.logs import atomic_write_text

# preset -> (setting, paper notation)
SETTINGS = {
    "face": ("(i) face only", "w/F"),
    "context-masked-none": ("(ii) context, face masked", "w/mC"),
    "context-masked-ca": ("(ii) context, face masked", "w/mC + CA"),
    "context-masked-gla": ("(ii) context, face masked", "w/mC + GLA"),
    "context-visible-none": ("(iii) context, face visible", "w/fC"),
    "context-visible-ca": ("(iii) context, face visible", "w/fC + CA"),
    "context-visible-gla": ("(iii) context, face visible", "w/fC + GLA"),
    "both-none": ("(iv) face + masked context", "w/F + mC"),
    "both-ca": ("(iv) face + masked context", "w/F + mC + CA"),
    "both-gla": ("(iv) face + masked context", "w/F + mC + GLA (GLAMOR-Net)"),
}


def markdown_table(rows: list[dict], recipe: str) -> str:
    lines = [
        "| Setting | Inputs to the fusion network | Test accuracy | Best val accuracy | Epochs | Train time |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['notation']} | {100 * r['test_accuracy']:.2f}% | "
                     f"{100 * r['best_val_accuracy']:.2f}% | {r['epochs_run']} | {r['train_time_s'] / 60:.1f} min |")
    chance = rows[0]["chance"] if rows else 1 / 7
    lines += ["", f"Built-in dataset, test split ({rows[0]['test_images'] if rows else '?'} images); chance "
              f"{100 * chance:.2f}%. Recipe: {recipe}. Each row is one run (seed {rows[0]['seed'] if rows else 0})."]
    return "\n".join(lines) + "\n"


def run_setting(args: argparse.Namespace, preset: str, out_root: Path) -> dict:
    from glamor_fast.evaluate import evaluate_checkpoint

    out = out_root / preset
    cfg = recipe_config(args, preset, out)
    result_file = out / "result.json"
    if result_file.is_file() and not args.force:
        saved = json.loads(result_file.read_text())
        if saved.get("config") == cfg.to_dict():
            print(f"{preset}: reusing {result_file}", flush=True)
            return saved
    print(f"== {preset}: {SETTINGS.get(preset, ('', preset))[1]}", flush=True)
    t0 = time.perf_counter()
    result = train(cfg)
    t_train = time.perf_counter() - t0
    metrics = evaluate_checkpoint(result.best_checkpoint, split="test", out_dir=str(out),
                                  progress=cfg.progress, verbose=False)
    setting, notation = SETTINGS.get(preset, (preset, preset))
    row = {"preset": preset, "setting": setting, "notation": notation, "test_accuracy": metrics["accuracy"],
           "per_class_accuracy": metrics["per_class_accuracy"], "chance": metrics["chance"],
           "test_images": metrics["n"], "best_val_accuracy": result.best_metric, "best_epoch": result.best_epoch,
           "epochs_run": len(result.history), "train_time_s": round(t_train, 1), "seed": cfg.seed,
           "config": cfg.to_dict()}
    atomic_write_text(result_file, json.dumps(row, indent=2))
    print(f"{preset}: test accuracy {metrics['accuracy']:.4f}", flush=True)
    return row


def ablation(args: argparse.Namespace) -> list[dict]:
    """Run (or reuse) every setting in args.models; write ablation.md/json; return the rows."""
    from glamor_fast.models import PRESETS

    unknown = [m for m in args.models if m not in PRESETS]
    if unknown:
        raise ValueError(f"--models: unknown presets {unknown}; choose from {', '.join(PRESETS)}")
    out_root = Path(args.out_dir)
    rows = [run_setting(args, preset, out_root) for preset in args.models]
    recipe = (f"{args.optimizer} lr {args.lr} weight decay {args.weight_decay}, {args.scheduler} schedule, "
              f"{args.epochs} epochs, batch {args.batch_size}, best-validation checkpoint "
              f"(val = {args.val_fraction:.0%} of train)")
    table = markdown_table(rows, recipe)
    atomic_write_text(out_root / "ablation.md", table)
    atomic_write_text(out_root / "ablation.json", json.dumps(rows, indent=2))
    print("\n" + table + f"\nwrote {out_root / 'ablation.md'}", flush=True)
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser, "runs/ablation")
    parser.add_argument("--models", nargs="+", default=list(SETTINGS), metavar="PRESET",
                        help="presets to run (default: the paper's ten settings)")
    parser.add_argument("--force", action="store_true", help="retrain settings that already have a result.json")


def main(args: argparse.Namespace) -> int:
    return run_reporting_errors("ablation", ablation, args)
