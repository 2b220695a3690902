"""``glamor-fast predict --camera N`` / ``predict URL``: the live-stream half of the predict command."""
from __future__ import annotations

import argparse
import json
import sys

from glamor_fast.predict.stream import is_stream


def add_stream_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--camera", type=int, metavar="N",
                        help="read camera N live (instead of INPUT files); URLs OpenCV opens (rtsp://, http://, "
                             "file:) given as INPUT are read live too. Ctrl-C ends it, with every output complete")


def stream_source(args: argparse.Namespace):
    """The camera index or the URL to read live, None for files; ValueError for a mix or several streams."""
    urls = [i for i in args.inputs if is_stream(i)]
    if args.camera is None and not urls:
        if not args.inputs:
            raise ValueError("give INPUT files or folders, a stream URL, or --camera N")
        return None
    if len(urls) + (args.camera is not None) > 1 or len(args.inputs) > len(urls):
        raise ValueError("a live stream (--camera N or one URL) is read alone: give no other INPUT")
    return args.camera if args.camera is not None else urls[0]


def run_stream(args: argparse.Namespace, source) -> int:
    from glamor_fast.predict.stream import predict_stream

    on_record = (lambda r: print(json.dumps(r), flush=True)) if args.json else None
    result = predict_stream(source, args.checkpoint, args.out, detector=args.detector, every=args.every,
                            device=args.device, backend=args.backend, detect_side=args.detect_side,
                            min_face=args.min_face, on_record=on_record)
    end = "stopped (Ctrl-C)" if result.interrupted else "stream ended"
    print(f"{end}: {result.frames_done} of {result.frames_read} frames processed, {result.dropped} dropped "
          f"(the model was behind); {result.records} records in {result.jsonl}; video {result.video}",
          file=sys.stderr if args.json else sys.stdout, flush=True)
    return 0
