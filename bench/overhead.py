"""The host path around the kernels: per backend, one forward+backward of the GLA op and of the
fused encoder block at a tiny shape, where the kernels take almost no time and what is measured
is the calls around them.

For each backend available on the device:
  aten_calls    outermost aten:: calls of one forward+backward (glamor_fast.ops.host_calls),
                including the autograd engine's (aten::detach as it stores each leaf's gradient)
  item_calls    aten::item / aten::_local_scalar_dense among all calls (a sync on a GPU)
  wall_us       median wall time of one forward+backward over interleaved rounds, with the
                min and max round (on CUDA the step ends with a synchronize)
  cpu_us        the same for the process's CPU time (time.process_time): on a machine shared
                with other work, the host cost of the call without the time it waited for a core
  host_us       CUDA only: the host time of the same step without the final synchronize

Shapes: "tiny" (B=1, one cell, D=8, Hd=8) and the model's own GLA call ("paper32": B=32,
256-dim maps 7x7, Hd=128); the block at (2, 8, 4, 4) and (32, 32, 112, 112) channels_last.

    python -m bench.overhead [--device cpu|cuda] [--threads 1] [--rounds 15] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from glamor_fast.models.encoders import FusedBNReLUPool2d
from glamor_fast.ops.gla import gla
from glamor_fast.ops.host_calls import count_aten_calls
from glamor_fast.ops.registry import available_backends

from .machine import machine_info

GLA_SHAPES = {"tiny": dict(B=1, D=8, H=1, W=1, Hd=8), "paper32": dict(B=32, D=256, H=7, W=7, Hd=128)}
BLOCK_SHAPES = {"tiny": (2, 8, 4, 4), "paper32": (32, 32, 112, 112)}


def _gla_step(backend: str, shape: dict, device: torch.device):
    B, D, H, W, Hd = shape["B"], shape["D"], shape["H"], shape["W"], shape["Hd"]
    g = torch.Generator().manual_seed(0)
    leaves = [torch.randn(B, D, generator=g), torch.randn(B, D, H, W, generator=g),
              torch.randn(Hd, 2 * D, generator=g) * 0.1, torch.randn(Hd, generator=g) * 0.1,
              torch.randn(Hd, generator=g) * 0.1, torch.randn((), generator=g)]
    leaves = [t.to(device).requires_grad_(True) for t in leaves]
    grads = (torch.randn(B, D, generator=g).to(device), torch.randn(B, H, W, generator=g).to(device))

    def step():
        for t in leaves:
            t.grad = None
        pooled, attn = gla(*leaves, backend=backend)
        torch.autograd.backward((pooled, attn), grads)

    return step


def _block_step(backend: str, shape: tuple, device: torch.device):
    block = FusedBNReLUPool2d(shape[1], backend=backend).to(device)
    x = torch.randn(shape, device=device).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    grad = torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2, device=device)
    grad = grad.contiguous(memory_format=torch.channels_last)
    leaves = [x, block.weight, block.bias]

    def step():
        for t in leaves:
            t.grad = None
        torch.autograd.backward(block(x), grad)

    return step


def _wall_us(steps: dict, device: torch.device, rounds: int, per_round: int, sync: bool,
             clock=time.perf_counter) -> dict:
    """Median / min / max microseconds per call (of ``clock``) over interleaved rounds of every step."""
    samples = {name: [] for name in steps}
    for fn in steps.values():
        for _ in range(5):
            fn()
    for _ in range(rounds):
        for name, fn in steps.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = clock()
            for _ in range(per_round):
                fn()
            if sync and device.type == "cuda":
                torch.cuda.synchronize()
            samples[name].append((clock() - t0) / per_round * 1e6)
    return {name: {"median": statistics.median(s), "min": min(s), "max": max(s)} for name, s in samples.items()}


def measure(device: torch.device, rounds: int, per_round: int) -> list[dict]:
    rows, steps = [], {}
    for shape_name, shape in GLA_SHAPES.items():
        for backend in available_backends(device, torch.float32, op="gla"):
            steps[("gla", shape_name, backend)] = _gla_step(backend, shape, device)
    for shape_name, shape in BLOCK_SHAPES.items():
        for backend in available_backends(device, torch.float32, op="bn_relu_pool"):
            steps[("block", shape_name, backend)] = _block_step(backend, shape, device)
    wall = _wall_us(steps, device, rounds, per_round, sync=True)
    cpu = _wall_us(steps, device, rounds, per_round, sync=True, clock=time.process_time)
    host = _wall_us(steps, device, rounds, per_round, sync=False) if device.type == "cuda" else {}
    for key, fn in steps.items():
        fn()
        counts = count_aten_calls(fn)
        row = {"op": key[0], "shape": key[1], "backend": key[2], "aten_calls": sum(counts.values()),
               "item_calls": counts["aten::item"] + counts["aten::_local_scalar_dense"],
               "calls": dict(counts.most_common()), "wall_us": wall[key], "cpu_us": cpu[key]}
        if key in host:
            row["host_us"] = host[key]
        rows.append(row)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1: host time, not kernel time)")
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds per step (default 15)")
    p.add_argument("--per-round", type=int, default=20, help="calls per round (default 20)")
    p.add_argument("--json", help="write the rows and the machine to this file")
    a = p.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        print("bench.overhead: --device cuda: no CUDA device is available", file=sys.stderr)
        return 2
    if a.rounds < 1 or a.per_round < 1 or a.threads < 1:
        print("bench.overhead: --rounds, --per-round and --threads must be >= 1", file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    info = machine_info(a.threads)
    rows = measure(device, a.rounds, a.per_round)
    print(f"{info['cpu_model']}, {a.threads} thread(s), {a.device}; medians of {a.rounds} interleaved rounds")
    print(f"{'op':6s} {'shape':8s} {'backend':10s} {'aten':>5s} {'item':>5s} {'wall us (min-max)':>24s}"
          f" {'cpu us (min-max)':>24s}"
          + ("  host us" if device.type == "cuda" else ""))
    for r in rows:
        w = r["wall_us"]
        line = (f"{r['op']:6s} {r['shape']:8s} {r['backend']:10s} {r['aten_calls']:5d} {r['item_calls']:5d} "
                f"{w['median']:9.1f} ({w['min']:.1f}-{w['max']:.1f})"
                f" {r['cpu_us']['median']:9.1f} ({r['cpu_us']['min']:.1f}-{r['cpu_us']['max']:.1f})")
        if "host_us" in r:
            line += f"  {r['host_us']['median']:8.1f}"
        print(line)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": info, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
