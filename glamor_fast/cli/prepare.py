"""``glamor-fast prepare``: decode a CAER-S-layout dataset once into a memory-mappable cache.

    glamor-fast prepare CAER-S --out CAER-S-cache --workers 8
    glamor-fast train --dataset caer-s --cache CAER-S-cache
"""
from __future__ import annotations

import argparse
import sys

from glamor_fast.cli.errors import run_reporting_errors
from glamor_fast.data.cache_build import default_workers, prepare_cache
from glamor_fast.data.no_box import NO_BOX_POLICIES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", help="dataset root holding <split>/<Emotion>/*.png (and crop/ box files)")
    parser.add_argument("--out", help="cache folder (default: <root>-cache beside the dataset)")
    parser.add_argument("--splits", nargs="+", help="split folders to prepare (default: all of them)")
    parser.add_argument("--workers", type=int, default=None,
                        help=f"decoding processes (default: every usable core, here {default_workers()})")
    parser.add_argument("--face-visible", action="store_true",
                        help="keep the face in the context (the paper's setting (iii): the context-visible-* models)")
    parser.add_argument("--no-box", default="unmasked", choices=NO_BOX_POLICIES,
                        help="images without a face box: unmasked context (the authors' behaviour, default, so "
                             "results compare with the paper), drop them, or detect a face (Haar)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="report and leave out images that cannot be decoded (with a count) instead of stopping")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar")


def run(args: argparse.Namespace) -> int:
    try:
        result = prepare_cache(args.root, args.out, args.splits, face_visible=args.face_visible, no_box=args.no_box,
                               workers=args.workers, progress=args.progress, skip_bad=args.skip_bad)
    except KeyboardInterrupt:  # say what is kept; run_reporting_errors makes it exit status 130
        print("glamor-fast prepare: interrupted; no unfinished split was published. Run the same command "
              "again to resume.", file=sys.stderr)
        raise
    for split, s in result.items():
        left_out = f"; {s['unreadable']} unreadable image(s) left out" if s["unreadable"] else ""
        if s["up_to_date"]:
            print(f"{split}: {s['entries']} entries, up to date ({s['path']}){left_out}")
        else:
            print(f"{split}: {s['entries']} entries ({s['decoded']} decoded, {s['copied']} copied from the "
                  f"previous cache, {s['resumed']} from an interrupted run) -> {s['path']}{left_out}")
    skipped = sum(s["unreadable"] for s in result.values() if not s["up_to_date"])
    if skipped:
        print(f"skipped {skipped} unreadable image(s) (--skip-bad)")
    return 0


def main(args: argparse.Namespace) -> int:
    return run_reporting_errors("prepare", run, args)
