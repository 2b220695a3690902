"""``glamor-fast eval``: the command line of ``glamor_fast.evaluate``."""
from __future__ import annotations

import argparse

from glamor_fast.cli.errors import run_reporting_errors
from glamor_fast.cli.progress import add_progress_argument, show_progress
from glamor_fast.data.no_box import NO_BOX_POLICIES
from glamor_fast.evaluate import evaluate_checkpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint written by `glamor-fast train` (best.pt/last.pt)")
    parser.add_argument("--data-root", help="dataset root (default: the one the checkpoint was trained on)")
    parser.add_argument("--dataset", choices=["builtin", "caer-s", "ncaer-s"], help="default: the checkpoint's")
    parser.add_argument("--split", default="test", help="split folder to evaluate (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="default %(default)s")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (default %(default)s)")
    parser.add_argument("--backend", help="GLA backend (default: the checkpoint's)")
    parser.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"], help="default %(default)s")
    parser.add_argument("--num-workers", type=int, default=None, help="DataLoader workers (default: a share of the cores)")
    parser.add_argument("--cache", metavar="CACHE", help="read a `glamor-fast prepare` cache (same tensors, bit for bit)")
    parser.add_argument("--predictions", metavar="FILE",
                        help="write per-image results as JSON lines: source, label, emotion, probs")
    parser.add_argument("--csv", metavar="FILE",
                        help="write the same per-image results as CSV: source, label, emotion, probs_<class> (as predict --csv)")
    parser.add_argument("--no-box", choices=NO_BOX_POLICIES,
                        help="images without a face box (default: the checkpoint's setting)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave out images that cannot be decoded, with a count (default: stop at the first)")
    parser.add_argument("--out-dir", help="where the PNG and JSON go (default: the checkpoint's folder)")
    add_progress_argument(parser, "progress bar")


def run(args: argparse.Namespace) -> int:
    evaluate_checkpoint(args.checkpoint, data_root=args.data_root, dataset=args.dataset, split=args.split,
                        batch_size=args.batch_size, device=args.device, backend=args.backend,
                        out_dir=args.out_dir, amp=args.amp, num_workers=args.num_workers,
                        progress=show_progress(args.progress), cache=args.cache, predictions=args.predictions,
                        csv=args.csv, no_box=args.no_box, skip_bad=args.skip_bad)
    return 0


def main(args: argparse.Namespace) -> int:
    return run_reporting_errors("eval", run, args)
