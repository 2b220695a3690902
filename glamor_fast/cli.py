"""The ``glamor-fast`` command line: one sub-command per module.

Each module named in COMMANDS exposes ``add_arguments(parser)`` and ``main(args) -> int``.
``glamor-fast`` with no sub-command runs MAIN_JOB, the README quick start's main job.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS = {
    "demo": ("glamor_fast.demo", "one forward and backward pass of GLAMOR-Net on a random batch"),
}
MAIN_JOB = "demo"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glamor-fast",
        description=f"glamor_fast: fused Global-Local Attention and GLAMOR-Net. "
        f"With no command, runs `{MAIN_JOB}`.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args([*argv, MAIN_JOB])
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    return int(importlib.import_module(COMMANDS[args.command][0]).main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
