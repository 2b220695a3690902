"""``glamor-fast predict``: the command line of ``glamor_fast.predict``."""
from __future__ import annotations

import argparse
import json
import sys

from glamor_fast.predict import DEFAULT_CHECKPOINT, predict
from glamor_fast.training.checkpoint import CheckpointError


def parse_box(text: str) -> tuple[int, int, int, int]:
    """'x1,y1,x2,y2' -> ints; argparse-friendly ValueError otherwise."""
    parts = text.replace(" ", "").split(",")
    try:
        if len(parts) != 4:
            raise ValueError
        x1, y1, x2, y2 = (int(round(float(p))) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--box must be 'x1,y1,x2,y2' (pixels), got {text!r}") from None
    if x2 <= x1 or y2 <= y1:
        raise argparse.ArgumentTypeError(f"--box {text!r}: need x1 < x2 and y1 < y2")
    return x1, y1, x2, y2



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG/JPEG)")
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT,
                        help="checkpoint to use (default %(default)s, written by `glamor-fast quickstart`; "
                             "that one is trained on the synthetic built-in dataset, not on real faces)")
    parser.add_argument("--box", type=parse_box, action="append", metavar="X1,Y1,X2,Y2",
                        help="face box in pixels, once per image in order (default: detect with a Haar cascade)")
    parser.add_argument("--device", default="auto", help="default %(default)s")
    parser.add_argument("--backend", help="GLA backend (default: the checkpoint's)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def main(args: argparse.Namespace) -> int:
    try:
        results = predict(args.checkpoint, args.images, args.box, args.device, args.backend)
    except (CheckpointError, ValueError, FileNotFoundError) as exc:
        print(f"glamor-fast predict: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        probs = "  ".join(f"{c} {p:.3f}" for c, p in r["probabilities"].items())
        print(f"{r['image']}: {r['emotion']} ({r['probabilities'][r['emotion']]:.3f}); face box "
              f"{r['box']} ({r['box_source']})\n  {probs}")
    return 0
