"""GLA op benchmark: every available backend against eager PyTorch and torch.compile.

    python -m bench.gla [--suite paper|resnet|hires|scaling|tiny|all] [--quick]
                        [--device cpu|cuda|all] [--backends eager compile cpp ...]
                        [--json PATH] [--threads N]

For each case (bench/suites.py) and backend it measures, in one run:
  fwd     the forward under torch.no_grad()                          (median, IQR)
  bwd     torch.autograd.grad of (pooled, attn), timed alone after an untimed forward
  fwdbwd  forward with autograd + torch.autograd.grad                (median, IQR)
  memory  peak extra bytes of fwd and of fwdbwd (bench/timing.py says how)
  roofline fraction of each time (bench/roofline.py), and a bare torch.mm of the
          (B*N, Dc) x (Dc, Hd) product timed in the same run (fwd/mm).
Backends: "eager" (= the library's "reference": gla_reference), "compile"
(torch.compile(gla_reference), compiled afresh for each case with dynamic=False) and every
backend ``available_backends(device)`` lists at run time. "triton" on the CPU is the
interpreter, so it is left out there unless named in --backends.
Speed-ups are t_eager / t_backend and t_compile / t_backend: above 1 means faster.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Callable, Optional

import torch

from glamor_fast.ops import gla, gla_reference
from glamor_fast.ops.backends import BACKEND_MODULES, available_backends, unavailable_reason

from .machine import machine_info
from .roofline import fraction, measure_limits
from .suites import SUITES, Case, get_cases
from .timing import Rotator, n_copies, peak_extra_bytes, time_fn, time_with_setup

MODES = ("fwd", "bwd", "fwdbwd")
BASELINES = ("eager", "compile")
# Relative error above which a backend's output is flagged as wrong (fp32 against fp32 eager;
# the backends' own tests hold them to ~1e-5; tf32 on a GPU sits near 1e-3).
WRONG_RTOL = 1e-2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", default="all", choices=[*SUITES, "all"],
                        help="which shapes (default all; with --quick: the cases the performance bars name)")
    parser.add_argument("--quick", action="store_true", help="fewer shapes and shorter timing (< 2 min on 2 CPU cores)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "all"),
                        help="cpu, cuda, or all (cpu and, where present, cuda)")
    parser.add_argument("--backends", nargs="+", default=None, metavar="NAME",
                        help="subset of: eager compile " + " ".join(n for n in BACKEND_MODULES if n != "reference")
                        + " (default: eager, compile and every available backend)")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the results here as JSON")
    parser.add_argument("--min-time", type=float, default=None, metavar="SECONDS",
                        help="timed seconds per measurement (default 1.0, 0.25 with --quick)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads (fixed for the run)")


def select_backends(device: torch.device, requested: Optional[list[str]]) -> tuple[list[str], dict]:
    """The backend names to run on ``device`` and, for the ones left out, why."""
    known = [*BASELINES, *(n for n in BACKEND_MODULES if n != "reference")]
    skipped = {}
    if requested is not None:
        names = ["eager" if n == "reference" else n for n in requested]
        for n in names:
            if n not in known:
                raise SystemExit(f"bench.gla: unknown backend {n!r} in --backends; choose from {', '.join(known)}")
            if n not in BASELINES:
                reason = unavailable_reason(n, device, torch.float32)
                if reason is not None:
                    raise SystemExit(f"bench.gla: backend {n!r} is not available on {device.type}: {reason}")
        return list(dict.fromkeys(names)), skipped
    names = list(BASELINES)
    available = available_backends(device, torch.float32)
    for n in BACKEND_MODULES:
        if n == "reference":
            continue
        if n == "triton" and device.type == "cpu":
            skipped[n] = "on the CPU this is the Triton interpreter (name it in --backends to time it anyway)"
        elif n in available:
            names.append(n)
        else:
            skipped[n] = unavailable_reason(n, device, torch.float32)
    return names, skipped


def make_inputs(case: Case, device: torch.device, seed: int) -> dict:
    """fp32 inputs of ``case`` needing grad, and random output gradients (gp (B,Dc), ga (B,H,W))."""
    g = torch.Generator().manual_seed(seed)
    B, Df, Dc, H, W, Hd = case.B, case.Df, case.Dc, case.H, case.W, case.Hd
    t = [torch.randn(B, Df, generator=g), torch.randn(B, Dc, H, W, generator=g),
         torch.randn(Hd, Df + Dc, generator=g) / (Df + Dc) ** 0.5, torch.randn(Hd, generator=g) * 0.1,
         torch.randn(Hd, generator=g) / Hd ** 0.5, torch.randn((), generator=g)]
    inputs = [x.to(device).requires_grad_(True) for x in t]
    grads = [torch.randn(B, Dc, generator=g).to(device), torch.randn(B, H, W, generator=g).to(device)]
    return {"inputs": inputs, "grads": grads}


def make_op(name: str) -> Callable:
    """A callable(face, context, w1, b1, w2, b2) -> (pooled, attn) for backend ``name``."""
    if name == "eager":
        return gla_reference
    if name == "compile":
        torch._dynamo.reset()  # a fresh compile per case: specialised to its shapes, no recompile limit
        return torch.compile(gla_reference, dynamic=False)
    return lambda *args: gla(*args, backend=name)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30))


def bench_backend(name: str, case: Case, sets: list[dict], device: torch.device, threads: int,
                  min_time: float, limits: dict, expected: Optional[tuple]) -> dict:
    op = make_op(name)
    res: dict = {}

    t0 = time.perf_counter()  # first calls: compilation for "compile", lazy set-up for others
    with torch.no_grad():
        out = op(*sets[0]["inputs"])
    outs = op(*sets[0]["inputs"])
    torch.autograd.grad(outs, sets[0]["inputs"], sets[0]["grads"])
    _sync(device)
    res["first_call_s"] = time.perf_counter() - t0
    if expected is not None:
        res["rel_err_vs_eager"] = max(_rel_err(out[0], expected[0]), _rel_err(out[1], expected[1]))
        res["wrong"] = res["rel_err_vs_eager"] > WRONG_RTOL
    del out, outs

    def fwd(face, context, w1, b1, w2, b2):
        with torch.no_grad():
            return op(face, context, w1, b1, w2, b2)

    fwd_sets = [s["inputs"] for s in sets]
    res["fwd"] = time_fn(Rotator(fwd, fwd_sets), device, threads, min_time)

    # backward alone: the forward (untimed) builds a fresh graph before each timed backward
    make_graph = Rotator(lambda i, g: (op(*i), i, g), [(s["inputs"], s["grads"]) for s in sets])
    res["bwd"] = time_with_setup(make_graph, lambda st: torch.autograd.grad(*st), device, threads, min_time)

    step = Rotator(lambda i, g: torch.autograd.grad(op(*i), i, g), [(s["inputs"], s["grads"]) for s in sets])
    res["fwdbwd"] = time_fn(step, device, threads, min_time)

    s0 = sets[0]
    res["mem_fwd_bytes"] = peak_extra_bytes(lambda: fwd(*s0["inputs"]), device)
    res["mem_fwdbwd_bytes"] = peak_extra_bytes(lambda: torch.autograd.grad(op(*s0["inputs"]), s0["inputs"], s0["grads"]), device)
    for mode in MODES:
        res[mode]["roofline"] = fraction(case, mode, res[mode]["median_s"], limits)
    return res


def bench_mm(case: Case, n_sets: int, device: torch.device, threads: int, min_time: float) -> dict:
    """The bare (B*N, Dc) x (Dc, Hd) product every forward must do, same rotation."""
    g = torch.Generator().manual_seed(1)
    sets = [(torch.randn(case.B * case.N, case.Dc, generator=g).to(device),
             torch.randn(case.Dc, case.Hd, generator=g).to(device)) for _ in range(n_sets)]
    return time_fn(Rotator(torch.mm, sets), device, threads, min_time)


def bench_case(case: Case, names: list[str], device: torch.device, threads: int, min_time: float,
               limits: dict, log=print) -> dict:
    copies = n_copies(4 * case.B * case.N * case.Dc)
    sets = [make_inputs(case, device, seed) for seed in range(copies)]
    with torch.no_grad():
        expected = gla_reference(*sets[0]["inputs"])
    result = {"case": case.as_dict(), "input_copies": copies, "backends": {}}
    result["mm"] = bench_mm(case, copies, device, threads, min_time)
    for name in names:
        t0 = time.perf_counter()
        result["backends"][name] = bench_backend(name, case, sets, device, threads, min_time, limits,
                                                 None if name == "eager" else expected)
        log(f"  {case.name:<34} {name:<8} fwd {result['backends'][name]['fwd']['median_s'] * 1e3:9.3f} ms"
            f"  ({time.perf_counter() - t0:.1f} s)")
    _add_ratios(result)
    return result


def _add_ratios(result: dict) -> None:
    b = result["backends"]
    for name, r in b.items():
        r["ratios"] = {}
        for base in BASELINES:
            if base in b:
                for mode in MODES:
                    r["ratios"][f"speedup_vs_{base}_{mode}"] = b[base][mode]["median_s"] / r[mode]["median_s"]
                r["ratios"][f"mem_fwdbwd_vs_{base}"] = r["mem_fwdbwd_bytes"] / max(b[base]["mem_fwdbwd_bytes"], 1)
                r["ratios"][f"mem_fwd_vs_{base}"] = r["mem_fwd_bytes"] / max(b[base]["mem_fwd_bytes"], 1)
        r["ratios"]["fwd_over_mm"] = r["fwd"]["median_s"] / result["mm"]["median_s"]


def _fmt_ratio(r: dict, key: str) -> str:
    return f"{r['ratios'][key]:.2f}" if key in r["ratios"] else "-"


def format_table(dev: dict) -> str:
    """One table for one device's results."""
    lim = dev["limits"]
    lines = [
        f"device {dev['device']} ({dev['device_name']}), {dev['threads']} threads; same-run limits: copy "
        f"{lim['copy_bytes_per_s'] / 1e9:.1f} GB/s, fp32 mm {lim['mm_flops_per_s'] / 1e9:.0f} GFLOP/s",
        "times: median ms (IQR as % of median); xE / xC: speed-up over eager / torch.compile (>1 faster);"
        " mem: peak extra MB; roof: fraction of the roofline; fwd/mm: forward over a bare torch.mm",
    ]
    head = (f"{'case':<34} {'backend':<8} {'fwd ms':>14} {'bwd ms':>14} {'fwd+bwd ms':>14} "
            f"{'fwd xE':>6} {'xC':>5} {'f+b xE':>6} {'xC':>5} {'mem fwd':>8} {'mem f+b':>8} {'mem/E':>6} "
            f"{'roof fwd':>8} {'roof f+b':>8} {'fwd/mm':>6}")
    lines += [head, "-" * len(head)]
    for c in dev["cases"]:
        mm = c["mm"]["median_s"] * 1e3
        for name, r in c["backends"].items():
            t = {m: f"{r[m]['median_s'] * 1e3:.3f} ({100 * r[m]['iqr_s'] / r[m]['median_s']:.0f}%)" for m in MODES}
            flag = "  WRONG: rel err %.1e" % r["rel_err_vs_eager"] if r.get("wrong") else ""
            lines.append(
                f"{c['case']['name']:<34} {name:<8} {t['fwd']:>14} {t['bwd']:>14} {t['fwdbwd']:>14} "
                f"{_fmt_ratio(r, 'speedup_vs_eager_fwd'):>6} {_fmt_ratio(r, 'speedup_vs_compile_fwd'):>5} "
                f"{_fmt_ratio(r, 'speedup_vs_eager_fwdbwd'):>6} {_fmt_ratio(r, 'speedup_vs_compile_fwdbwd'):>5} "
                f"{r['mem_fwd_bytes'] / 1e6:8.2f} {r['mem_fwdbwd_bytes'] / 1e6:8.2f} "
                f"{_fmt_ratio(r, 'mem_fwdbwd_vs_eager'):>6} "
                f"{r['fwd']['roofline']['fraction']:8.2f} {r['fwdbwd']['roofline']['fraction']:8.2f} "
                f"{_fmt_ratio(r, 'fwd_over_mm'):>6}{flag}")
        lines.append(f"{'':<34} {'torch.mm':<8} {mm:>9.3f} ms  ((B*N, Dc) x (Dc, Hd) alone)")
    return "\n".join(lines)


# The CPU bars (measured, not asserted): case filter, ratio key, comparison, threshold.
BAR_CASES = {"paper:B256:7x7:D256/256:Hd128", "hires:B8:56x56:D256/256:Hd128"}
BARS = (
    ("fwd >= 3x eager", "speedup_vs_eager_fwd", ">=", 3.0),
    ("fwd >= 1.5x compile", "speedup_vs_compile_fwd", ">=", 1.5),
    ("fwd+bwd >= 2x eager", "speedup_vs_eager_fwdbwd", ">=", 2.0),
    ("peak mem f+b <= 1/4 eager", "mem_fwdbwd_vs_eager", "<=", 0.25),
    ("fwd <= 1.5x torch.mm", "fwd_over_mm", "<=", 1.5),
)


def check_bars(dev: dict) -> list[dict]:
    """Each library backend against the issue's bars on the cases they name (CPU bars)."""
    rows = []
    for c in dev["cases"]:
        if c["case"]["name"] not in BAR_CASES:
            continue
        for name, r in c["backends"].items():
            if name in BASELINES:
                continue
            for label, key, op, limit in BARS:
                if key not in r["ratios"]:
                    continue
                v = r["ratios"][key]
                ok = v >= limit if op == ">=" else v <= limit
                rows.append({"case": c["case"]["name"], "backend": name, "bar": label, "value": v, "met": ok})
    return rows


def format_bars(rows: list[dict]) -> str:
    return "\n".join(f"  {'MET ' if r['met'] else 'MISS'} {r['backend']:<7} {r['case']:<34} {r['bar']:<26} measured {r['value']:.2f}"
                     for r in rows)


def run(args: argparse.Namespace, log=print) -> dict:
    if args.threads < 1:
        raise SystemExit(f"bench.gla: --threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    devices = {"cpu": ["cpu"], "cuda": ["cuda"], "all": ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])}
    devices = devices[args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        raise SystemExit("bench.gla: --device cuda but torch.cuda.is_available() is False")
    cases = get_cases(args.suite, args.quick)
    min_time = args.min_time if args.min_time is not None else (0.25 if args.quick else 1.0)
    result = {"meta": {**machine_info(args.threads), "argv": sys.argv, "suite": args.suite, "quick": args.quick,
                       "min_time_s": min_time},
              "devices": {}}
    for dev_name in devices:
        device = torch.device(dev_name)
        names, skipped = select_backends(device, args.backends)
        log(f"[{dev_name}] backends: {', '.join(names)}" +
            "".join(f"\n  skipped {k}: {v}" for k, v in skipped.items()))
        limits = measure_limits(device, args.threads, min_time, args.quick)
        dev = {"device": dev_name,
               "device_name": torch.cuda.get_device_name(device) if dev_name == "cuda" else result["meta"]["cpu_model"],
               "threads": args.threads, "backends": names, "skipped": skipped, "limits": limits, "cases": []}
        for case in cases:
            dev["cases"].append(bench_case(case, names, device, args.threads, min_time, limits, log))
        if dev_name == "cpu":
            dev["bars"] = check_bars(dev)
        result["devices"][dev_name] = dev
    return result


def main(args: Optional[argparse.Namespace] = None) -> int:
    if args is None:
        parser = argparse.ArgumentParser(prog="python -m bench.gla", description=__doc__.split("\n")[0])
        add_arguments(parser)
        args = parser.parse_args()
    t0 = time.perf_counter()
    result = run(args)
    result["meta"]["wall_s"] = time.perf_counter() - t0
    for dev in result["devices"].values():
        print()
        print(format_table(dev))
        if dev.get("bars"):
            print("the issue's CPU bars on this run:")
            print(format_bars(dev["bars"]))
    print(f"\nwall time {result['meta']['wall_s']:.1f} s; load average at start {result['meta']['load_average']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
