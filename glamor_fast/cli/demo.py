"""`glamor-fast demo`: one forward and backward pass of GLAMOR-Net on a random batch."""
from __future__ import annotations

import argparse
import time

import torch

from glamor_fast.cli.errors import run_reporting_errors
from glamor_fast.models import GLAMORNet
from glamor_fast.ops.registry import choose_backend


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--backend", default="auto", help="GLA backend (auto, reference, triton, cpp, cuda)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    model = GLAMORNet(backend=args.backend).to(device)
    face = torch.rand(args.batch_size, 3, 96, 96, device=device)
    context = torch.rand(args.batch_size, 3, 112, 112, device=device)
    labels = torch.randint(0, 7, (args.batch_size,), device=device)
    backend = choose_backend(args.backend, device, torch.float32)

    start = time.perf_counter()
    logits, attn, weights = model(face, context, return_details=True)
    loss = torch.nn.functional.cross_entropy(logits, labels)
    loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start

    print("GLAMOR-Net, one forward and backward pass on a random batch (demo, not training)")
    print(f"  device {device}, GLA backend {backend!r} (asked: {args.backend!r})")
    print(f"  face {tuple(face.shape)}  context {tuple(context.shape)}")
    print(f"  logits {tuple(logits.shape)}  attention map {tuple(attn.shape)}  fusion weights {tuple(weights.shape)}")
    print(f"  loss {loss.item():.4f}  forward+backward {elapsed * 1000:.1f} ms")
    return 0


def main(args: argparse.Namespace) -> int:
    return run_reporting_errors("demo", run, args)
