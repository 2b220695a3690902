"""``glamor-fast serve CKPT``: the HTTP recognition server (``glamor_fast.serve``; extra ``[serve]``)."""
from __future__ import annotations

import argparse
import sys

from glamor_fast.cli.errors import run_reporting_errors
from glamor_fast.cli.predict import _positive_int, _quiet_opencv, _seconds
from glamor_fast.data.faces import DETECTORS

SERVE_EXTRA = 'pip install ".[serve]"  (fastapi, uvicorn, python-multipart)'
# one flag per field of glamor_fast.serve.limits.Limits: its metavar and help
LIMIT_FLAGS = {
    "max_upload_bytes": ("BYTES", "largest request body"),
    "max_image_pixels": ("PIXELS", "largest image or video frame, width x height"),
    "max_video_frames": ("N", "longest video"),
    "max_request_seconds": ("SECONDS", "longest a request may take, upload included"),
    "max_faces": ("N", "most boxes a caller may send with one image"),
}


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected milliseconds >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected milliseconds >= 0, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from glamor_fast.predict.run import DEFAULT_MIN_FACE
    from glamor_fast.serve.limits import Limits

    parser.add_argument("checkpoint", metavar="CKPT", help="checkpoint to serve (from train, quickstart or import-tf)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default %(default)s: this machine only; 0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default %(default)s; 0: any free port)")
    parser.add_argument("--threads", type=_positive_int, default=1, metavar="N",
                        help="torch threads per model worker (default %(default)s: OpenMP's barriers stall when "
                             "other threads or processes share the cores; use --model-workers for more cores)")
    parser.add_argument("--max-batch", type=_positive_int, default=16, metavar="N",
                        help="faces of concurrent requests per forward pass (default %(default)s; 1 turns batching off)")
    parser.add_argument("--max-wait-ms", type=_non_negative, default=5.0, metavar="MS",
                        help="how long a forward pass waits for more requests' faces (default %(default)s)")
    parser.add_argument("--model-workers", type=_positive_int, default=1, metavar="N",
                        help="threads running forward passes side by side, each with --threads torch threads "
                             "(default %(default)s)")
    parser.add_argument("--detect-workers", type=_positive_int, default=2, metavar="N",
                        help="threads decoding uploads and detecting faces (default %(default)s)")
    parser.add_argument("--detector", default="haar", choices=list(DETECTORS), help="face detector (default %(default)s)")
    parser.add_argument("--min-face", type=_positive_int, default=DEFAULT_MIN_FACE, metavar="PIXELS",
                        help="ignore detected faces smaller than this (default %(default)s)")
    defaults = Limits()
    for name, (metavar, text) in LIMIT_FLAGS.items():
        value = getattr(defaults, name)
        parser.add_argument("--" + name.replace("_", "-"), type=_seconds if isinstance(value, float) else _positive_int,
                            default=value, metavar=metavar, help=f"{text} (default %(default)s)")
    parser.add_argument("--device", default="auto", help="default %(default)s")
    parser.add_argument("--backend", help="GLA backend (default: the checkpoint's)")


def run(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import multipart  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ValueError(f"serve needs the optional extra: {SERVE_EXTRA} ({exc.name} is missing)") from None
    import cv2
    import torch

    from glamor_fast.serve import Engine, Limits, ServeSettings, create_app, serve
    from glamor_fast.serve.server import bind

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be 0..65535, got {args.port}")
    limits = Limits(**{name: getattr(args, name) for name in LIMIT_FLAGS})
    if not getattr(args, "verbose", False):
        _quiet_opencv()
    if args.threads:
        torch.set_num_threads(args.threads)
    # The model thread gives up the GIL at every torch op and must get it back quickly while the event loop
    # and the detection pool use it: a 0.5 ms switch interval (Python's default: 5 ms) raised batched
    # throughput about 2x on a loaded 2-core machine. OpenCV's own thread pool is off: the pool above
    # already runs one image per thread, and nested pools stall each other when cores are shared.
    sys.setswitchinterval(0.0005)
    cv2.setNumThreads(1)
    sock = bind(args.host, args.port)  # a taken port is reported before the model loads
    engine = Engine(args.checkpoint, device=args.device, backend=args.backend, detector=args.detector,
                    min_face=args.min_face)
    settings = ServeSettings(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                             model_workers=args.model_workers, detect_workers=args.detect_workers, limits=limits)
    app = create_app(engine, settings)

    def ready() -> None:
        host = f"[{args.host}]" if ":" in args.host else args.host
        print(f"glamor-fast serve: listening on http://{host}:{sock.getsockname()[1]} (batching "
              f"{'off' if args.max_batch == 1 else f'up to {args.max_batch} faces, {args.max_wait_ms:g} ms'})",
              flush=True)

    try:
        code = serve(app, sock, drain_s=args.max_request_seconds, on_ready=ready)
    finally:
        sock.close()
    print("glamor-fast serve: stopped", file=sys.stderr, flush=True)
    return code


def main(args: argparse.Namespace) -> int:
    return run_reporting_errors("serve", run, args)
