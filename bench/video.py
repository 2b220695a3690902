"""``predict`` on a video end to end: frames/s with the default settings, and each stage's share.

    python -m bench.video [--faces 2] [--frames 150] [--threads 2] [--every N] [--detector haar]
                          [--repeats 3] [--json PATH]

A 640x360 25 fps clip (mp4v) with one or two faces (matplotlib's grace_hopper.jpg, about 110 px
faces, drifting across the frame) and an untrained GLAMOR-Net checkpoint with the default model
settings are generated in a temporary folder. Then:

- end to end: ``python -m glamor_fast predict CLIP --out DIR`` in a fresh process with
  OMP_NUM_THREADS/MKL_NUM_THREADS = --threads, wall time from process start to exit (imports,
  checkpoint loading, decode, detect, model, annotate, encode, timeline PNG), median of
  --repeats; frames/s = frames / that time.
- stage shares: the same run in this process with each stage timed (decode: reading the frames;
  detect: the detector calls; model: preprocessing and the forward passes; annotate: drawing;
  encode: the video encoder thread; rest: JSON lines, tracking, the timeline). The encoder runs on
  its own thread, so the shares add up to more than the wall time when it overlaps.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from .machine import machine_info

SIZE = (640, 360)
FPS = 25.0


def make_clip(path: Path, faces: int, frames: int) -> Path:
    from matplotlib import cbook

    from glamor_fast.data import read_image

    face = cv2.cvtColor(read_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)), cv2.COLOR_RGB2BGR)
    face = cv2.resize(face, (150, 176), interpolation=cv2.INTER_AREA)  # face inside about 110 px
    w, h = SIZE
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.integers(40, 200, (h, w, 3), dtype=np.uint8), (31, 31), 0)
    for i in range(frames):
        frame = background.copy()
        for k in range(faces):
            x = int(100 + 300 * k + 60 * np.sin(2 * np.pi * i / frames + k))
            y = int(80 + 20 * np.cos(2 * np.pi * i / frames))
            frame[y:y + 176, x:x + 150] = face
        writer.write(frame)
    writer.release()
    return path


def make_checkpoint(path: Path) -> Path:
    """An untrained GLAMOR-Net with the default settings (speed does not depend on the weights)."""
    from glamor_fast.data import EMOTIONS
    from glamor_fast.models import build_model
    from glamor_fast.training import TrainConfig, save_checkpoint

    cfg = TrainConfig(model="glamor-net")
    net = build_model(cfg.model, num_classes=len(EMOTIONS), **cfg.model_overrides())
    return save_checkpoint(path, {
        "model": net.state_dict(), "optimizer": None, "scheduler": None, "scaler": None, "epoch": 0,
        "step_in_epoch": 0, "global_step": 0, "config": cfg.to_dict(), "class_names": list(EMOTIONS),
        "best_metric": -1.0, "best_epoch": 0, "history": [], "data_root": None})


def end_to_end(clip: Path, ckpt: Path, out: Path, threads: int, extra: list) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    root = Path(__file__).resolve().parent.parent
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "glamor_fast", "predict", str(clip), "--checkpoint", str(ckpt),
                           "--out", str(out), *extra], cwd=root, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"bench.video: predict failed:\n{proc.stderr}")
    return wall


def stage_times(clip: Path, ckpt: Path, out: Path, threads: int, every: int, detector_name: str) -> dict:
    """Run predict in this process with every stage wrapped in a timer; seconds per stage."""
    import torch

    import glamor_fast.predict.inputs as inputs
    import glamor_fast.predict.outputs as outputs
    import glamor_fast.predict.run as run
    from glamor_fast.data.faces import make_detector
    from glamor_fast.recognizer import DEFAULT_DETECT_SIDE, DEFAULT_MIN_FACE, EmotionRecognizer

    torch.set_num_threads(threads)
    spent = {"decode": 0.0, "detect": 0.0, "model": 0.0, "annotate": 0.0, "encode": 0.0}

    def timed(name, fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name] += time.perf_counter() - t
        return wrapper

    real_read = cv2.VideoCapture.read
    saved = (inputs.VideoReader.__iter__, EmotionRecognizer.classify, run.draw_faces, outputs.cv2)

    class TimedCapture:  # cv2.VideoCapture's read() timed; everything else passed through
        def __init__(self, cap):
            self.cap = cap

        def read(self):
            return timed("decode", real_read)(self.cap)

        def __getattr__(self, name):
            return getattr(self.cap, name)

    def timed_iter(self):
        self.cap = TimedCapture(self.cap)
        yield from saved[0](self)

    class TimedWriterCv2:  # outputs.cv2 with VideoWriter.write timed (it runs on the encoder thread)
        def __getattr__(self, name):
            return getattr(cv2, name)

        @staticmethod
        def VideoWriter(*a):
            w = cv2.VideoWriter(*a)

            class W:
                def write(self, frame):
                    return timed("encode", w.write)(frame)

                def __getattr__(self, name):
                    return getattr(w, name)
            return W()

    inputs.VideoReader.__iter__ = timed_iter
    EmotionRecognizer.classify = timed("model", saved[1])
    run.draw_faces = timed("annotate", saved[2])
    outputs.cv2 = TimedWriterCv2()
    try:
        kw = {"max_side": DEFAULT_DETECT_SIDE, "min_size": DEFAULT_MIN_FACE} if detector_name == "haar" else {}
        detector = make_detector(detector_name, **kw)
        t0 = time.perf_counter()
        run.predict([clip], ckpt, out, detector=timed("detect", detector), every=every)
        wall = time.perf_counter() - t0
    finally:
        inputs.VideoReader.__iter__, EmotionRecognizer.classify, run.draw_faces, outputs.cv2 = saved
    spent["rest"] = max(wall - sum(v for k, v in spent.items() if k != "encode"), 0.0)
    return {"wall_s": wall, **spent}


def main(argv=None) -> int:
    from glamor_fast.predict.run import DEFAULT_EVERY

    p = argparse.ArgumentParser(prog="python -m bench.video", description=__doc__.split("\n\n")[0])
    p.add_argument("--faces", type=int, default=2, choices=[1, 2])
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--every", type=int, default=DEFAULT_EVERY, help="detection interval (default: predict's)")
    p.add_argument("--detector", default="haar", help="predict's --detector (default %(default)s)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    extra = ([] if args.every == DEFAULT_EVERY else ["--every", str(args.every)]) + (
        [] if args.detector == "haar" else ["--detector", args.detector])
    with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp:
        tmp = Path(tmp)
        clip = make_clip(tmp / "clip.mp4", args.faces, args.frames)
        ckpt = make_checkpoint(tmp / "ckpt.pt")
        walls = [end_to_end(clip, ckpt, tmp / f"out{r}", args.threads, extra) for r in range(args.repeats)]
        stages = stage_times(clip, ckpt, tmp / "stages", args.threads, args.every, args.detector)
        records = [json.loads(line) for line in (tmp / "out0/predictions.jsonl").read_text().splitlines()]
    info = machine_info(args.threads)
    med = statistics.median(walls)
    result = {"machine": info, "frames": args.frames, "faces": args.faces, "size": SIZE, "every": args.every,
              "detector": args.detector,
              "end_to_end_s": walls, "frames_per_s": args.frames / med,
              "faces_found_per_frame": sum(r["box"] is not None for r in records) / args.frames,
              "stages_s": stages}
    print(f"{info['cpu_model']}, {args.threads} threads, load {info['load_average']}")
    print(f"{args.frames} frames {SIZE[0]}x{SIZE[1]}, {args.faces} face(s), --detector {args.detector} "
          f"--every {args.every}: end to end "
          f"(process start included) {med:.2f} s median of {walls and ', '.join(f'{w:.2f}' for w in walls)} "
          f"-> {result['frames_per_s']:.1f} frames/s; {result['faces_found_per_frame']:.2f} faces found per frame")
    total = sum(v for k, v in stages.items() if k != "wall_s")
    print(f"in-process run {stages['wall_s']:.2f} s; stage shares (of {total:.2f} s, encode on its own thread):")
    for k, v in stages.items():
        if k != "wall_s":
            print(f"  {k:9s} {v:6.2f} s  {100 * v / total:5.1f} %  {1000 * v / args.frames:6.1f} ms/frame")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
