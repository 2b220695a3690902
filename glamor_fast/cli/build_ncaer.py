"""`glamor-fast build-ncaer CAER_ROOT OUT`: rebuild NCAER-S from the CAER videos (see ncaer.py)."""
from __future__ import annotations

from pathlib import Path

from glamor_fast.cli.errors import run_reporting_errors
from glamor_fast.cli.progress import add_progress_argument, show_progress
from glamor_fast.data.ncaer import DEFAULT_PARTS, build_ncaer, format_counts


def add_arguments(parser) -> None:
    """CLI: `glamor-fast build-ncaer CAER_ROOT OUT`."""
    parser.add_argument("caer_root", help="CAER video root with {train,validation,test}/<Emotion>/*.avi")
    parser.add_argument("out", help="output folder (images go to OUT/images, manifest to OUT/manifest.json)")
    parser.add_argument("--parts", type=int, default=DEFAULT_PARTS,
                        help=f"parts per video, one random frame each (default {DEFAULT_PARTS})")
    parser.add_argument("--seed", type=int, default=0, help="frame-choice seed (default 0)")
    parser.add_argument("--no-detect", action="store_true",
                        help="write no face boxes (run `glamor-fast detect-faces OUT/images` later)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT/images")
    parser.add_argument("--dedupe-by-name", action="store_true",
                        help="also drop a val/test video whose <Emotion>/<name> appears in an earlier split "
                             "(videos with identical bytes are always dropped)")
    add_progress_argument(parser, "progress bar")


def run(args) -> int:
    manifest = build_ncaer(args.caer_root, args.out, parts=args.parts, seed=args.seed,
                           detector=None if args.no_detect else "haar", progress=show_progress(args.progress),
                           overwrite=args.overwrite, by_name=args.dedupe_by_name)
    print(format_counts(manifest))
    print(f"NCAER-S written to {Path(args.out) / 'images'}; manifest {Path(args.out) / 'manifest.json'}")
    return 0


def main(args) -> int:
    return run_reporting_errors("build-ncaer", run, args)
