"""The ``glamor-fast`` command line: one sub-command per module of this package.

The library holds no argparse; each module here named in COMMANDS exposes ``add_arguments(parser)`` and ``main(args) -> int``.
``glamor-fast`` with no sub-command runs MAIN_JOB, the README quick start's main job. Python
warnings raised while a command runs print as one line, ``glamor-fast COMMAND: warning: ...``.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Optional

from .warning_lines import one_line_warnings

COMMANDS = {
    "demo": ("glamor_fast.cli.demo", "one forward and backward pass of GLAMOR-Net on a random batch"),
    "quickstart": ("glamor_fast.cli.quickstart",
                   "the main job: generate the built-in dataset, train GLAMOR-Net, evaluate, write figures"),
    "train": ("glamor_fast.cli.train", "train a GLAMOR-Net preset (DDP under torchrun)"),
    "eval": ("glamor_fast.cli.evaluate", "accuracy, per-class accuracy and confusion matrix of a checkpoint"),
    "visualize": ("glamor_fast.cli.visualize", "attention maps (paper Figure 5) and a prediction grid (Figure 6)"),
    "predict": ("glamor_fast.cli.predict",
                "every face in images, folders and videos: annotated copies, timelines, predictions.jsonl"),
    "serve": ("glamor_fast.cli.serve",
              "an HTTP server (extra [serve]): faces of concurrent requests batched into one forward pass"),
    "ablation": ("glamor_fast.cli.ablation", "the paper's ablation table on the built-in dataset (Markdown)"),
    "prepare": ("glamor_fast.cli.prepare", "decode a dataset once into a memory-mappable cache for train/eval --cache"),
    "detect-faces": ("glamor_fast.cli.detect_faces", "write face-box files for a CAER-S-layout dataset (Haar cascade)"),
    "build-ncaer": ("glamor_fast.cli.build_ncaer", "build NCAER-S from the CAER videos"),
    "import-tf": ("glamor_fast.cli.import_tf",
                  "convert the authors' TensorFlow GLAMOR-Net checkpoint into a project checkpoint (no TensorFlow)"),
    "export": ("glamor_fast.cli.export",
               "write a checkpoint's inference network as ONNX (onnxruntime, no model code), pt2 or AOTInductor"),
    "bench": ("glamor_fast.cli.bench", "GLA benchmarks: every backend vs eager and torch.compile (run from a checkout)"),
}
MAIN_JOB = "quickstart"


def _version() -> str:
    from glamor_fast import __version__

    return __version__


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    """The parser of every command; with ``only``, the arguments of that command alone (its
    module is the only one imported: the others are listed with their one-line help)."""
    parser = argparse.ArgumentParser(
        prog="glamor-fast",
        description=f"glamor_fast: fused Global-Local Attention and GLAMOR-Net. "
        f"With no command, runs `{MAIN_JOB}`.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument("--version", action="version", version=f"glamor-fast {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or name == only:
            importlib.import_module(module).add_arguments(p)
    return parser


def _command_in(argv: list) -> str:
    """The command argv names (the first word that is one), else MAIN_JOB."""
    return next((a for a in argv if a in COMMANDS), MAIN_JOB)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_in(argv)
    parser = build_parser(only=command)
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args([*argv, MAIN_JOB])
    args.argv = argv  # what was typed: train --resume tells explicit flags from defaults with it
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    module = importlib.import_module(COMMANDS[args.command][0])
    with one_line_warnings(args.command):
        return int(module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
