"""``glamor-fast import-tf PREFIX OUT.pt``: the command line of ``glamor_fast.import_tf``."""
from __future__ import annotations

import argparse

from glamor_fast.cli.errors import run_reporting_errors
from glamor_fast.import_tf import import_tf


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prefix", help="TF checkpoint prefix: PREFIX.index and PREFIX.data-* "
                                       "(the authors' weights/glamor-net/Model)")
    parser.add_argument("out", help="project checkpoint to write (e.g. glamor-net-authors.pt)")
    parser.add_argument("--dataset", default="builtin", choices=["builtin", "caer-s", "ncaer-s"],
                        help="dataset recorded in the checkpoint, used by eval unless told otherwise "
                             "(default %(default)s)")
    parser.add_argument("--data-root", help="dataset root recorded in the checkpoint")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip the crc32c check of the tensors (faster on huge checkpoints)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")


def run(args: argparse.Namespace) -> int:
    path = import_tf(args.prefix, args.out, dataset=args.dataset, data_root=args.data_root,
                     verify=args.verify, overwrite=args.force)
    print(f"wrote {path}: the authors' GLAMOR-Net (preset glamor-net-authors) with the weights of {args.prefix}")
    return 0


def main(args: argparse.Namespace) -> int:
    return run_reporting_errors("import-tf", run, args)
