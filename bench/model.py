"""GLAMOR-Net end to end: training and inference images/s and peak memory under speed settings.

    python -m bench.model [--quick] [--batch 32] [--threads N] [--backends ...] [--no-compile]
                          [--preset glamor-net] [--json PATH]

Batch 32 of the paper's inputs: face (B, 3, 96, 96), context (B, 3, 112, 112), 7 classes.
  train  one optimiser step: zero_grad, forward, cross-entropy, backward, SGD(momentum) step
  infer  eval-mode forward under torch.no_grad() or torch.inference_mode()
Settings swept (one change at a time from the plain eager baseline, then combined):
GLA backend (every available one), channels_last, the fused encoder blocks switched off
(unfused_blocks: ``set_block_backend(model, "reference")``), torch.compile, BatchNorm folded into
the convs for inference (fold_bn: ``fold_batchnorm``, which leaves each fused block's ReLU and
pool as one ``ReLUMaxPool2d``), the first layer as one conv+ReLU+pool kernel (stem:
``fuse_stem``; fold_bn+stem is ``optimize_for_inference``), inference_mode, threads (--threads). Every setting is
built and warmed up first (compilation happens there and is reported separately), then all
are timed round-robin, one step each per round; times are medians over the rounds. Each
step's process CPU time is recorded too: with --threads 1 on a loaded machine, images per
CPU-second estimates the rate of an unloaded core (with more threads it sums their time,
spin-waits included, so it is only a lower bound there);
memory is the peak extra bytes of one step (bench/timing.py). A torch.profiler pass over one
step of the baseline splits the time between the conv encoders, GLA and the rest. Then one
encoder block alone (bench/block.py): eager, torch.compile and fused, its time, bytes moved and
fraction of the measured copy bandwidth (--no-block skips it).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from glamor_fast.models import build_model
from glamor_fast.ops.gla import gla
from glamor_fast.ops.registry import BACKENDS

BACKEND_NAMES = tuple(BACKENDS["gla"])

from .gla import select_backends
from .machine import machine_info
from glamor_fast.models.encoders import set_block_backend
from glamor_fast.models.speed import fold_batchnorm, optimize_for_inference
from .block import run_block
from .timing import peak_extra_bytes


@dataclass(frozen=True)
class Setting:
    mode: str                 # "train" or "infer"
    backend: str = "reference"
    channels_last: bool = False
    compile: bool = False
    fold_bn: bool = False     # infer only
    stem: bool = False        # infer only, with fold_bn: the first layer's conv+ReLU+pool fused
    inference_mode: bool = False  # infer only: inference_mode instead of no_grad
    unfused_blocks: bool = False  # the encoders' BN-ReLU-pool as the literal torch ops

    @property
    def label(self) -> str:
        parts = [self.backend]
        parts += [p for p, on in (("channels_last", self.channels_last), ("compile", self.compile),
                                  ("fold_bn", self.fold_bn), ("stem", self.stem), ("inference_mode", self.inference_mode),
                                  ("unfused_blocks", self.unfused_blocks)) if on]
        return "+".join(parts)


def settings_to_run(backends: list[str], compile_ok: bool, quick: bool) -> list[Setting]:
    """The sweep: baseline, one change at a time, the combinations, every backend at the best eager set."""
    out = []
    for mode in ("train", "infer"):
        base = Setting(mode)
        out.append(base)
        out.append(Setting(mode, channels_last=True))
        if mode == "infer":
            out.append(Setting(mode, inference_mode=True))
            out.append(Setting(mode, fold_bn=True))
            out.append(Setting(mode, channels_last=True, fold_bn=True, inference_mode=True))
            out.append(Setting(mode, channels_last=True, fold_bn=True, stem=True, inference_mode=True))
        for b in backends:
            if b != "reference":
                out.append(Setting(mode, backend=b))
                if mode == "infer":
                    out.append(Setting(mode, backend=b, channels_last=True, fold_bn=True, stem=True,
                                       inference_mode=True))
                else:
                    out.append(Setting(mode, backend=b, channels_last=True))
                    out.append(Setting(mode, backend=b, channels_last=True, unfused_blocks=True))
        if compile_ok:
            best = backends[-1] if quick else "reference"
            if mode == "infer":
                out.append(Setting(mode, backend=best, channels_last=True, fold_bn=True, stem=True,
                                   inference_mode=True, compile=True))
                if not quick:
                    out.append(Setting(mode, compile=True))
            else:
                out.append(Setting(mode, backend=best, channels_last=True, compile=True))
                if not quick:
                    out.append(Setting(mode, compile=True))
    return list(dict.fromkeys(out))


def make_batch(batch: int, channels_last: bool, seed: int = 0, device: torch.device = torch.device("cpu")):
    g = torch.Generator().manual_seed(seed)
    face = torch.rand(batch, 3, 96, 96, generator=g).to(device)
    context = torch.rand(batch, 3, 112, 112, generator=g).to(device)
    labels = torch.randint(0, 7, (batch,), generator=g).to(device)
    if channels_last:
        face = face.contiguous(memory_format=torch.channels_last)
        context = context.contiguous(memory_format=torch.channels_last)
    return face, context, labels


def build_step(s: Setting, preset: str, batch: int, device: torch.device = torch.device("cpu")):
    """A zero-argument callable doing one step of ``s`` on ``device``, and the model it uses.

    On CUDA the step synchronises before returning, so a host clock around it times the work.
    """
    torch.manual_seed(0)
    model = build_model(preset, backend=s.backend).to(device)
    if s.unfused_blocks:
        set_block_backend(model, "reference")
    face, context, labels = make_batch(batch, s.channels_last, device=device)
    if s.mode == "infer":
        model.eval()
        if s.fold_bn:
            folded = optimize_for_inference(model, channels_last=False) if s.stem else fold_batchnorm(model)[0]
            with torch.no_grad():  # folding must not change the function (fp32 rounding only)
                want, got = model(face, context), folded(face, context)
            err = float((want - got).abs().max() / want.abs().max().clamp_min(1e-12))
            if err > 1e-4:
                raise RuntimeError(f"folding/fusing changed the logits: relative error {err:.2e}")
            model = folded
    if s.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if s.compile else model
    if s.mode == "train":
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(face, context), labels)
            loss.backward()
            opt.step()
            _sync(device)
            return loss.detach()
    else:
        guard = torch.inference_mode if s.inference_mode else torch.no_grad

        def step():
            with guard():
                out = net(face, context)
            _sync(device)
            return out
    return step, model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, steps: int, warmup: int) -> dict:
    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    warm_s = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    q = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else [times[0]] * 3
    return {"median_s": statistics.median(times), "iqr_s": q[2] - q[0], "steps": steps, "warmup_s": warm_s}


def run_sweep(settings: list[Setting], preset: str, batch: int, steps: int, log=print,
              device: torch.device = torch.device("cpu")) -> list[dict]:
    """Build and warm up every setting, then time them round-robin, one step each per round.

    Interleaving spreads a shared machine's load changes over all settings alike instead of
    favouring whichever ran in a quiet minute; each setting's median is over its ``steps`` rounds.
    """
    prepared = []
    for s in settings:
        step, _ = build_step(s, preset, batch, device)
        t0 = time.perf_counter()
        for _ in range(2 if s.compile else 1):
            step()
        warm_s = time.perf_counter() - t0
        mem = peak_extra_bytes(step, device)
        prepared.append((s, step, warm_s, mem, [], []))
        log(f"  prepared {s.mode:<5} {s.label:<58} warm-up {warm_s:6.1f} s  peak extra {mem / 1e6:7.1f} MB")
    for _ in range(steps):
        for s, step, _, _, times, cpu_times in prepared:
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
    results = []
    for s, _, warm_s, mem, times, cpu_times in prepared:
        q = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else [times[0]] * 3
        med = statistics.median(times)
        cpu = statistics.median(cpu_times)
        results.append({**asdict(s), "label": s.label, "median_s": med, "iqr_s": q[2] - q[0], "steps": steps,
                        "warmup_s": warm_s, "images_per_s": batch / med, "peak_extra_bytes": mem,
                        "cpu_median_s": cpu, "images_per_cpu_s": batch / cpu})
    for r in results:
        log(f"  {r['mode']:<5} {r['label']:<58} {r['images_per_s']:7.1f} img/s  median {r['median_s'] * 1e3:8.1f} ms "
            f"(IQR {100 * r['iqr_s'] / r['median_s']:.0f}%)  mem {r['peak_extra_bytes'] / 1e6:7.1f} MB  "
            f"[{r['images_per_cpu_s']:6.1f} img per CPU-second]")
    return results


def profile_split(preset: str, batch: int, backend: str) -> dict:
    """Where one eager step's time goes: torch.profiler over one training and one inference step.

    Forward: record_function ranges around the face encoder, context encoder, attention and
    fusion (forward hooks). Backward: autograd nodes of convolution / batch-norm / max-pool
    are counted as encoder backward. GLA's share is also timed in isolation (its op at the
    model's shapes, forward and forward+backward), which does not depend on op naming.
    """
    from torch.profiler import ProfilerActivity, profile, record_function

    out = {}
    for mode in ("train", "infer"):
        step, model = build_step(Setting(mode, backend=backend), preset, batch)
        ranges = {}
        for name in ("face_encoder", "context_encoder", "attention", "fusion"):
            sub = getattr(model, name)
            if sub is None:
                continue

            def pre(mod, inp, _n=name):
                ranges[_n] = record_function(f"bench::{_n}")
                ranges[_n].__enter__()

            def post(mod, inp, outp, _n=name):
                ranges[_n].__exit__(None, None, None)

            sub.register_forward_pre_hook(pre)
            sub.register_forward_hook(post)
        step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            step()
            total = time.perf_counter() - t0
        events = prof.events()
        split = {"step_s_under_profiler": total}
        for e in events:
            if e.name.startswith("bench::"):
                key = "fwd_" + e.name[len("bench::"):]
                split[key + "_s"] = split.get(key + "_s", 0.0) + e.cpu_time_total / 1e6
        if mode == "train":
            enc_bwd = 0.0
            for e in events:
                if e.name.startswith("autograd::engine::evaluate_function:") and any(
                        k in e.name for k in ("Convolution", "BatchNorm", "MaxPool")):
                    enc_bwd += e.cpu_time_total / 1e6
            split["bwd_encoder_ops_s"] = enc_bwd
        out[mode] = split
    # GLA alone at the model's shapes (conv5: face (B, 256), context (B, 256, 7, 7), Hd 128)
    from .gla import make_inputs, make_op
    from .suites import Case

    case = Case("model", batch, 256, 256, 7, 7, 128)
    s = make_inputs(case, torch.device("cpu"), 0)
    op = make_op("eager") if backend == "reference" else (lambda *a: gla(*a, backend=backend))
    with torch.no_grad():
        f = time_steps(lambda: op(*s["inputs"]), 20, 2)
    fb = time_steps(lambda: torch.autograd.grad(op(*s["inputs"]), s["inputs"], s["grads"]), 20, 2)
    out["gla_alone"] = {"backend": backend, "fwd_s": f["median_s"], "fwdbwd_s": fb["median_s"]}
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="fewer settings and steps")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--keep-freed-memory", action=argparse.BooleanOptionalAction, default=True,
                        help="CPU: glibc keeps freed memory for reuse, as `train` does by default "
                             "(glamor_fast.training.allocator)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--preset", default="glamor-net")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--steps", type=int, default=None, help="timed steps per setting (default 10, 4 with --quick)")
    parser.add_argument("--backends", nargs="+", default=None, metavar="NAME",
                        help="GLA backends (default: every available one; the Triton interpreter left out on CPU)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile settings")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiler split")
    parser.add_argument("--no-block", action="store_true",
                        help="skip the encoder block alone (bench.block: eager, compiled, fused)")
    parser.add_argument("--json", default=None, metavar="PATH")


def main(args: Optional[argparse.Namespace] = None) -> int:
    if args is None:
        parser = argparse.ArgumentParser(prog="python -m bench.model", description=__doc__.split("\n")[0])
        add_arguments(parser)
        args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench.model: --device cuda but torch sees no CUDA device")
    kept = False
    if args.keep_freed_memory and device.type == "cpu":
        from glamor_fast.training.allocator import keep_freed_memory

        kept = keep_freed_memory()
    names, skipped = select_backends(device, args.backends)
    backends = ["reference" if n == "eager" else n for n in names if n in BACKEND_NAMES or n == "eager"]
    for n in backends:
        if n not in BACKEND_NAMES:
            raise SystemExit(f"bench.model: unknown GLA backend {n!r}")
    steps = args.steps or (4 if args.quick else 10)
    t_start = time.perf_counter()
    meta = {**machine_info(args.threads), "argv": sys.argv, "batch": args.batch, "preset": args.preset,
            "steps": steps, "backends": backends, "skipped": skipped, "keep_freed_memory": kept}
    print(f"GLAMOR-Net ({args.preset}) batch {args.batch}, {args.threads} threads, {meta['cpu_model']}, "
          f"load {meta['load_average']}; GLA backends {backends}" +
          "".join(f"\n  skipped {k}: {v}" for k, v in skipped.items()))
    results = run_sweep(settings_to_run(backends, not args.no_compile, args.quick), args.preset, args.batch, steps,
                        device=device)
    split = None if args.no_profile or device.type != "cpu" else profile_split(args.preset, args.batch, backends[-1])
    if split is not None:
        print("profile of one eager step (backend %s):" % backends[-1])
        for mode, d in split.items():
            print(f"  {mode}: " + ", ".join(f"{k} {v * 1e3:.1f} ms" if isinstance(v, float) else f"{k} {v}"
                                            for k, v in d.items()))
    block = None
    if not args.no_block:
        block = run_block(device=device, threads=args.threads, rounds=3 if args.quick else 7,
                          compile_ok=not args.no_compile)
    for mode in ("train", "infer"):
        best = max((r for r in results if r["mode"] == mode), key=lambda r: r["images_per_s"])
        print(f"best {mode}: {best['images_per_s']:.1f} img/s with {best['label']}")
    wall = time.perf_counter() - t_start
    print(f"wall time {wall:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": {**meta, "wall_s": wall}, "results": results, "profile": split,
                       "block": block}, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
