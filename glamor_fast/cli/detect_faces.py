"""`glamor-fast detect-faces ROOT`: write Haar-cascade face boxes for a CAER-S-layout tree."""
from __future__ import annotations

import argparse
from pathlib import Path

from glamor_fast.cli.errors import check_writable_dir, run_reporting_errors
from glamor_fast.cli.progress import add_progress_argument, show_progress
from glamor_fast.data.box_files import CROP_DIR, detect_faces
from glamor_fast.data.faces import HaarFaceDetector


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", help="dataset root holding <split>/<Emotion>/*.png|jpg")
    parser.add_argument("--splits", nargs="+", default=None,
                        help="split folders to process (default: every folder except crop/)")
    parser.add_argument("--overwrite", action="store_true", help="redo images that already have a box file")
    parser.add_argument("--scale-factor", type=float, default=1.1, help="Haar cascade scale step (default 1.1)")
    parser.add_argument("--min-neighbors", type=int, default=5, help="Haar cascade minNeighbors (default 5)")
    parser.add_argument("--min-size", type=int, default=20, help="smallest face side in pixels (default 20)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="report and skip images that cannot be decoded (with a count) instead of stopping")
    add_progress_argument(parser, "progress bar")


def run(args: argparse.Namespace) -> int:
    root = Path(args.root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root not found: {root}")
    crop = root / CROP_DIR  # where the box files go: check it can be written before detecting anything
    check_writable_dir(crop if crop.is_dir() else root, "the crop/ folder" if crop.is_dir() else "the dataset root")
    detector = HaarFaceDetector(scale_factor=args.scale_factor, min_neighbors=args.min_neighbors,
                                min_size=args.min_size)
    counts = detect_faces(args.root, detector=detector, overwrite=args.overwrite,
                          progress=show_progress(args.progress), splits=args.splits,
                          skip_bad=args.skip_bad)
    print(f"{counts['images']} images: {counts['detected']} faces found, {counts['no_face']} without a face, "
          f"{counts['skipped']} already had a box file; boxes in {args.root}/crop/")
    if counts["unreadable"]:
        print(f"skipped {counts['unreadable']} unreadable image(s) (--skip-bad); they have no box file")
    return 0


def main(args: argparse.Namespace) -> int:
    return run_reporting_errors("detect-faces", run, args)
