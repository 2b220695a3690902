"""``glamor-fast visualize``: the command line of ``glamor_fast.visualize``."""
from __future__ import annotations

import argparse

from glamor_fast.cli.errors import run_reporting_errors
from glamor_fast.visualize import visualize


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT",
                        help="one or more checkpoints (e.g. a CAER-Net-S and a GLAMOR-Net run to compare)")
    parser.add_argument("--out-dir", default="runs/visualize", help="default %(default)s")
    parser.add_argument("--split", default="test", help="default %(default)s")
    parser.add_argument("--num", type=int, default=7, help="samples in the attention figure (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="sample choice (default %(default)s)")
    parser.add_argument("--data-root", help="dataset root (default: the one each checkpoint was trained on)")
    parser.add_argument("--dataset", choices=["builtin", "caer-s", "ncaer-s"], help="default: the checkpoint's")
    parser.add_argument("--device", default="auto", help="default %(default)s")
    parser.add_argument("--backend", help="GLA backend (default: the checkpoint's)")


def run(args: argparse.Namespace) -> int:
    written = visualize(args.checkpoints, args.out_dir, args.split, args.num, args.seed, args.data_root,
                        args.device, args.backend, args.dataset)
    for name, path in written.items():
        print(f"wrote {path}")
    return 0


def main(args: argparse.Namespace) -> int:
    return run_reporting_errors("visualize", run, args)
