"""``glamor-fast prepare``: decode a CAER-S-layout dataset once into a memory-mappable cache.

    glamor-fast prepare CAER-S --out CAER-S-cache --workers 8
    glamor-fast train --dataset caer-s --cache CAER-S-cache
"""
from __future__ import annotations

import argparse
import sys

from glamor_fast.data.cache_build import PrepareError, default_workers, prepare_cache
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
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar")


def main(args: argparse.Namespace) -> int:
    try:
        result = prepare_cache(args.root, args.out, args.splits, face_visible=args.face_visible, no_box=args.no_box,
                               workers=args.workers, progress=args.progress)
    except KeyboardInterrupt:
        print("glamor-fast prepare: interrupted; no unfinished split was published. Run the same command "
              "again to resume.", file=sys.stderr)
        return 130
    except (PrepareError, ValueError, FileNotFoundError) as exc:
        print(f"glamor-fast prepare: error: {exc}", file=sys.stderr)
        return 1
    for split, s in result.items():
        if s["up_to_date"]:
            print(f"{split}: {s['entries']} entries, up to date ({s['path']})")
        else:
            print(f"{split}: {s['entries']} entries ({s['decoded']} decoded, {s['copied']} copied from the "
                  f"previous cache, {s['resumed']} from an interrupted run) -> {s['path']}")
    return 0
