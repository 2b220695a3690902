"""``glamor-fast ablation``: the paper's Table 2 on the built-in dataset, as a Markdown table.

Trains every setting with the quick-start recipe (glamor_fast.cli.quickstart.QUICK_RECIPE; the
number of epochs is --epochs), evaluates its best-validation checkpoint on the test split and
writes runs/ablation/ablation.md and ablation.json. Each setting's run lives in
runs/ablation/<preset>/; a finished setting (its result.json, same recipe) is reused, so an
interrupted ablation continues where it stopped (--force retrains). ``--seeds 0 1 2`` trains
every setting once per seed (runs/ablation/<preset>/seed<S>/) and reports mean ± standard
deviation over the seeds: one seed is not enough on the built-in data (GLAMOR-Net's row moved by
25 points between two seeds at 8 epochs).

Why CA can fall below no attention here: the deciding symbol depends on the face, and CAER-Net's
context attention cannot see the face, so it learns to attend to whichever symbol is salient.

Settings (paper notation): (i) w/F; (ii) w/mC, w/mC + CA, w/mC + GLA; (iii) w/fC, w/fC + CA,
w/fC + GLA; (iv) w/F + mC, w/F + mC + CA, w/F + mC + GLA (GLAMOR-Net).
"""
from __future__ import annotations

import argparse
import json
import statistics
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


def _pct(values: list) -> str:
    """'87.00%' for one value, '74.50 ± 10.61%' (sample standard deviation) for several."""
    if len(values) == 1:
        return f"{100 * values[0]:.2f}%"
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}%"


def summarize(runs: list[dict]) -> dict:
    """One table row from a setting's runs (one per seed)."""
    first = runs[0]
    return {**{k: first[k] for k in ("preset", "setting", "notation", "chance", "test_images")},
            "seeds": [r["seed"] for r in runs], "test_accuracy": [r["test_accuracy"] for r in runs],
            "best_val_accuracy": [r["best_val_accuracy"] for r in runs],
            "epochs_run": max(r["epochs_run"] for r in runs),
            "train_time_s": statistics.mean(r["train_time_s"] for r in runs), "runs": runs}


def markdown_table(rows: list[dict], recipe: str) -> str:
    seeds = rows[0]["seeds"] if rows else [0]
    lines = [
        "| Setting | Inputs to the fusion network | Test accuracy | Best val accuracy | Epochs | Train time |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['notation']} | {_pct(r['test_accuracy'])} | "
                     f"{_pct(r['best_val_accuracy'])} | {r['epochs_run']} | {r['train_time_s'] / 60:.1f} min |")
    chance = rows[0]["chance"] if rows else 1 / 7
    runs = (f"Each row is one run (seed {seeds[0]})." if len(seeds) == 1 else
            f"Each row is the mean ± sample standard deviation of {len(seeds)} runs (seeds "
            f"{', '.join(map(str, seeds))}); train time is per run.")
    lines += ["", f"Built-in dataset, test split ({rows[0]['test_images'] if rows else '?'} images); chance "
              f"{100 * chance:.2f}%. Recipe: {recipe}. {runs}"]
    return "\n".join(lines) + "\n"


def run_setting(args: argparse.Namespace, preset: str, out: Path, seed: int) -> dict:
    from glamor_fast.evaluate import evaluate_checkpoint

    args = argparse.Namespace(**{**vars(args), "seed": seed})
    cfg = recipe_config(args, preset, out)
    result_file = out / "result.json"
    if result_file.is_file() and not args.force:
        saved = json.loads(result_file.read_text())
        if saved.get("config") == cfg.to_dict():
            print(f"{preset} (seed {seed}): reusing {result_file}", flush=True)
            return saved
    print(f"== {preset}: {SETTINGS.get(preset, ('', preset))[1]} (seed {seed})", flush=True)
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
    print(f"{preset} (seed {seed}): test accuracy {metrics['accuracy']:.4f}", flush=True)
    return row


def ablation(args: argparse.Namespace) -> list[dict]:
    """Run (or reuse) every setting in args.models; write ablation.md/json; return the rows."""
    from glamor_fast.models import PRESETS

    unknown = [m for m in args.models if m not in PRESETS]
    if unknown:
        raise ValueError(f"--models: unknown presets {unknown}; choose from {', '.join(PRESETS)}")
    out_root = Path(args.out_dir)
    seeds = args.seeds if args.seeds else [args.seed]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds: repeated seeds {seeds}")

    def out_dir(preset: str, seed: int) -> Path:  # one seed keeps the single-run layout
        return out_root / preset if len(seeds) == 1 else out_root / preset / f"seed{seed}"

    rows = [summarize([run_setting(args, preset, out_dir(preset, seed), seed) for seed in seeds])
            for preset in args.models]
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
    parser.add_argument("--seeds", nargs="+", type=int, metavar="SEED",
                        help="train every setting once per seed and report mean ± std (default: --seed alone)")


def main(args: argparse.Namespace) -> int:
    return run_reporting_errors("ablation", ablation, args)
