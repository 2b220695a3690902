"""The ONNX export against PyTorch: largest output difference and per-image inference time.

    python -m bench.export [--checkpoint CKPT] [--threads 2] [--rounds 15] [--batches 1 32]
                           [--json PATH]

The network is what ``glamor-fast export`` writes (``glamor_fast.export.load_for_export``):
from CKPT, or an untrained GLAMOR-Net (speed does not depend on the weights; a difference
measured on untrained weights is smaller than on trained ones, so pass a trained CKPT for the
accuracy figure). PyTorch runs it as ``predict`` does (channels_last inputs, inference_mode,
the fused cpp kernels); onnxruntime runs the exported file on its CPU provider with the same
number of threads. Differences: random inputs at batch 1, 5 and 32, and matplotlib's photo
of Grace Hopper (face found by the Haar cascade, cropped as predict does). Times: the two
engines alternate call by call (interleaved rounds, one call each per round, after warm-up);
per image = median over rounds / batch, with the min-max spread.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.machine import machine_info


def _untrained_checkpoint(folder: Path) -> Path:
    from glamor_fast.data import EMOTIONS
    from glamor_fast.models import build_model
    from glamor_fast.training import TrainConfig, save_checkpoint

    torch.manual_seed(0)
    cfg = TrainConfig(backend="auto")
    net = build_model(cfg.model, num_classes=len(EMOTIONS), **cfg.model_overrides())
    return save_checkpoint(folder / "untrained.pt", {
        "model": net.state_dict(), "optimizer": None, "scheduler": None, "scaler": None, "epoch": 0,
        "config": cfg.to_dict(), "class_names": list(EMOTIONS)})


def _photo_inputs():
    import cv2
    from matplotlib import cbook

    from glamor_fast.data.faces import HaarFaceDetector
    from glamor_fast.data.transforms import preprocess

    image = cv2.cvtColor(cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))), cv2.COLOR_BGR2RGB)
    box = HaarFaceDetector(max_side=1280, min_size=40)(image)[0].box
    return tuple(torch.from_numpy(a)[None] for a in preprocess(image, box, train=False))


def _diff(net, onnx_net, face, context) -> float:
    with torch.inference_mode():
        want = net(face, context)
    got = [t for t in onnx_net(face, context) if t is not None]
    return max((g - w).abs().max().item() for g, w in zip(got, want))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="training checkpoint (default: an untrained GLAMOR-Net)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args(argv)

    from glamor_fast.cli.errors import one_line
    from glamor_fast.export import load_for_export
    from glamor_fast.export.onnx import save_onnx
    from glamor_fast.export.onnx_runtime import OnnxGlamorNet
    from glamor_fast.training.checkpoint import CheckpointError

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        tmp = Path(tmp)
        try:
            net, meta = load_for_export(args.checkpoint or _untrained_checkpoint(tmp))
        except (CheckpointError, OSError) as exc:
            print(f"bench.export: --checkpoint {args.checkpoint}: {one_line(exc)}", file=sys.stderr)
            return 1
        save_onnx(net, meta, tmp / "net.onnx", verify=False)
        onnx_net = OnnxGlamorNet(tmp / "net.onnx", threads=args.threads)
        result = _measure(net, onnx_net, args)
    m = result["machine"]
    print(f"{m['cpu_model']}, {args.threads} threads, load average {m['load_average']}, {m['date_utc']} UTC")
    for k, v in result["max_abs_diff"].items():
        print(f"max |onnxruntime - pytorch| {k}: {v:.2e}")
    for r in result["timing"]:
        print(f"{r['engine']:>11} batch {r['batch']:>3}: {r['ms_per_image']:.2f} ms/image "
              f"(min {r['min_ms']:.2f}, max {r['max_ms']:.2f}), {r['speedup_vs_pytorch']:.2f}x pytorch")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def _measure(net, onnx_net, args) -> dict:
    """Differences and interleaved timings of ``net`` (PyTorch) and ``onnx_net`` (onnxruntime)."""
    from glamor_fast.export.model import example_inputs

    gen = torch.Generator().manual_seed(0)
    diffs = {f"random batch {b}": _diff(net, onnx_net, *example_inputs(b, gen)) for b in (1, 5, 32)}
    diffs["grace_hopper.jpg"] = _diff(net, onnx_net, *_photo_inputs())

    cl = torch.channels_last
    engines = {
        "pytorch": lambda f, c: net(f.contiguous(memory_format=cl), c.contiguous(memory_format=cl)),
        "onnxruntime": onnx_net,
    }
    inputs = {b: example_inputs(b, gen) for b in args.batches}
    samples = {(e, b): [] for e in engines for b in args.batches}
    with torch.inference_mode():
        for _ in range(2):  # warm-up
            for e, run in engines.items():
                for b in args.batches:
                    run(*inputs[b])
        for _ in range(args.rounds):
            for b in args.batches:
                for e, run in engines.items():
                    start = time.perf_counter()
                    run(*inputs[b])
                    samples[(e, b)].append((time.perf_counter() - start) / b)
    rows = []
    for b in args.batches:
        per = {e: statistics.median(samples[(e, b)]) * 1e3 for e in engines}
        for e in engines:
            s = samples[(e, b)]
            rows.append({"engine": e, "batch": b, "ms_per_image": per[e], "min_ms": min(s) * 1e3,
                         "max_ms": max(s) * 1e3, "speedup_vs_pytorch": per["pytorch"] / per[e]})
    return {"machine": machine_info(args.threads), "checkpoint": str(args.checkpoint or "untrained"),
            "max_abs_diff": diffs, "timing": rows, "rounds": args.rounds}


if __name__ == "__main__":
    sys.exit(main())
