"""``glamor-fast predict INPUT... --checkpoint CKPT --out DIR``: the command line of ``glamor_fast.predict``."""
from __future__ import annotations

import argparse
import json
import sys

from glamor_fast.cli.errors import run_reporting_errors
from glamor_fast.cli.predict_stream import add_stream_arguments, run_stream, stream_source
from glamor_fast.data.faces import DETECTORS
from glamor_fast.predict.manifest import MANIFEST_NAME
from glamor_fast.predict.run import (DEFAULT_CHECKPOINT, DEFAULT_DETECT_SIDE, DEFAULT_EVERY, DEFAULT_MIN_FACE,
                                     JSONL_NAME)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="image files, video files (.mp4 .avi .mkv .mov .webm ...: what OpenCV's FFmpeg "
                             "decodes) and folders of them (searched recursively, sorted)")
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT,
                        help="checkpoint to use (default %(default)s, written by `glamor-fast quickstart`; "
                             "that one is trained on the synthetic built-in dataset, not on real faces), or an "
                             "exported .onnx model (run with onnxruntime: pip install \".[onnx]\")")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help=f"output folder: annotated images/videos, a timeline PNG per video, {JSONL_NAME}, "
                             f"{MANIFEST_NAME} (the files written); a folder an earlier run used is refused "
                             "unless --overwrite")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a used --out: files there are replaced, and the files the earlier run "
                             f"wrote (listed in its {MANIFEST_NAME}) that this run does not write again are "
                             "deleted, unless changed since; nothing else is touched. Also replaces --csv")
    parser.add_argument("--csv", metavar="FILE",
                        help="also write the records to this CSV file (same fields as the JSON lines; box as "
                             "box_x1..box_y2, probs as one probs_<class> column per class)")
    parser.add_argument("--detector", default="haar", choices=list(DETECTORS),
                        help="face detector (default %(default)s; dlib-cnn and dlib-hog need pip install \".[dlib]\")")
    parser.add_argument("--every", type=_positive_int, default=DEFAULT_EVERY, metavar="N",
                        help="videos: detect faces every N frames and track them in between (default %(default)s)")
    parser.add_argument("--smooth", action="store_true",
                        help="videos: smooth each face track's probabilities over time (exponential moving average)")
    parser.add_argument("--smooth-seconds", type=_seconds, default=0.5, metavar="SECONDS",
                        help="time constant of --smooth (default %(default)s)")
    parser.add_argument("--attention", action="store_true",
                        help="blend the faces' attention maps over the annotated frames (GLA/CA models)")
    parser.add_argument("--detect-side", type=_positive_int, default=DEFAULT_DETECT_SIDE, metavar="PIXELS",
                        help="haar: detect on video frames downscaled to this longer side (default %(default)s; "
                             "still images: at least 1280); faces under 24 px in that copy are missed "
                             "(e.g. under 96 px in a 1920x1080 frame)")
    parser.add_argument("--min-face", type=_positive_int, default=DEFAULT_MIN_FACE, metavar="PIXELS",
                        help="ignore faces smaller than this (pixels of the original frame; default %(default)s)")
    parser.add_argument("--batch-frames", type=_positive_int, default=8, metavar="N",
                        help="frames whose faces go through the model in one forward pass (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="also print every record as a JSON line")
    parser.add_argument("--progress", action="store_true", help="progress bars even when stderr is not a terminal")
    parser.add_argument("--device", default="auto", help="default %(default)s")
    parser.add_argument("--backend", help="GLA backend (default: the checkpoint's)")
    add_stream_arguments(parser)


def _quiet_opencv() -> None:
    """FFmpeg's and OpenCV's own warnings ("moov atom not found", ...) off: a file that cannot be
    decoded gets our one line instead. ``-v`` (or OPENCV_FFMPEG_LOGLEVEL set by the user) keeps them."""
    import os

    import cv2

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET, read when FFmpeg is next used
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def run(args: argparse.Namespace) -> int:
    """Every input in turn: one that fails is reported (one line) and skipped; exit status 1 if any failed."""
    from glamor_fast.predict import predict

    if not getattr(args, "verbose", False):
        _quiet_opencv()
    source = stream_source(args)
    if source is not None:
        return run_stream(args, source)

    def error(line: str) -> None:
        print(f"glamor-fast predict: error: {line}", file=sys.stderr)

    on_record = (lambda r: print(json.dumps(r), flush=True)) if args.json else None
    try:
        result = predict(args.inputs, args.checkpoint, args.out, detector=args.detector, every=args.every,
                         attention=args.attention, smooth=args.smooth_seconds if args.smooth else None,
                         device=args.device, backend=args.backend,
                         batch_frames=args.batch_frames, detect_side=args.detect_side, min_face=args.min_face,
                         progress=args.progress or sys.stderr.isatty(), overwrite=args.overwrite, csv=args.csv,
                         on_record=on_record, on_error=error)
    except KeyboardInterrupt:  # say what is kept; run_reporting_errors makes it exit status 130
        error(f"interrupted: the files of finished inputs are in {args.out}; {JSONL_NAME} was not "
              "written (an older one is left as it was)")
        raise
    done = len(result.outputs)
    print(f"{result.records} records in {result.jsonl}" + (f" and {result.csv}" if result.csv else "")
          + f"; {done} files written to {args.out}"
          + (f"; {len(result.removed)} files of the earlier run removed" if result.removed else "")
          + (f"; {len(result.errors)} input(s) failed (see above)" if result.errors else ""),
          file=sys.stderr if args.json else sys.stdout)
    return 1 if result.errors else 0


def main(args: argparse.Namespace) -> int:
    return run_reporting_errors("predict", run, args)
