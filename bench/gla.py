"""GLA op benchmark: every available backend against the best plain-PyTorch code.

    python -m bench.gla [--suite paper|resnet|hires|scaling|tiny|all] [--quick]
                        [--device cpu|cuda|all] [--backends eager compile split ... cpp ...]
                        [--json PATH] [--threads N] [--rounds R]
    python -m bench.gla --probe [--probe-shape B HW] [--probe-dtype float32|bfloat16|float16]
                        [--backends ...]           (CUDA only)

For each case (bench/suites.py) and backend it measures, in one run:
  fwd     the forward under torch.no_grad()
  bwd     torch.autograd.grad of (pooled, attn), timed alone after an untimed forward
  fwdbwd  forward with autograd + torch.autograd.grad
  memory  peak extra bytes of fwd and of fwdbwd (bench/timing.py says how)
  roofline fraction of each time (bench/roofline.py), and a bare torch.mm of the
          (B*N, Dc) x (Dc, Hd) product timed in the same rounds (fwd/mm).
Timing is interleaved: R rounds (default 5), each timing every backend's three modes and the
mm once, for about min_time / R seconds each. A time is the median of its R round times, its
spread the smallest and largest; a ratio is the median of the R per-round ratios (so load
that hits one round hits both sides of that round's ratio), spread likewise.

Unfused baselines (plain PyTorch, no library kernel):
  eager          gla_reference, the literal concat formulation (the spec)
  compile        torch.compile(gla_reference)
  split          gla_split: no concat, u = v_f W1f^T + b1 once per sample, bmm pooling
  split_compile  torch.compile(gla_split)
Each torch.compile is compiled afresh per case with dynamic=False. Library backends: every
one ``available_backends(device)`` lists ("triton" on the CPU is the interpreter, so it is
left out there unless named in --backends).
Speed-ups are t_baseline / t_backend (above 1 means faster); "best" is the baseline with the
lowest median time for that case and mode: the bars are judged against it.

--probe (CUDA only) looks inside one shape instead of running the suites: Df = Dc = 256,
Hd = 128, B and the map side from --probe-shape (default the paper's B=256, 7x7). For each backend
(default: split, eager and the available fused GPU backends) it prints the relative errors of
the outputs and input gradients against the reference in float64, the CUDA-event median of 50
calls of fwd and of fwd+bwd, and torch.profiler's table of the kernels with the most GPU time
over 3 fwd+bwd calls (divide by 3 for one call).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Callable, Optional

import torch

from glamor_fast.ops import gla_reference, gla_split
from glamor_fast.ops.gla import gla
from glamor_fast.ops.registry import BACKENDS, available_backends, unavailable_reason

BACKEND_NAMES = tuple(BACKENDS["gla"])

from .gpu_kernels import event_median_ms, kernel_table, require_cuda
from .machine import machine_info
from .roofline import fraction, measure_limits
from .suites import SUITES, Case, get_cases
from .timing import Rotator, n_copies, peak_extra_bytes, time_fn, time_with_setup

MODES = ("fwd", "bwd", "fwdbwd")
BASELINES = ("eager", "compile", "split", "split_compile")
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
                        help="subset of: eager compile " + " ".join(n for n in BACKEND_NAMES if n != "reference")
                        + " (default: eager, compile and every available backend)")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the results here as JSON")
    parser.add_argument("--min-time", type=float, default=None, metavar="SECONDS",
                        help="timed seconds per measurement, over all rounds (default 2.0, 0.5 with --quick)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads (fixed for the run)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="interleaved timing rounds (default 5): each times every backend once")
    parser.add_argument("--probe", action="store_true",
                        help="CUDA only: one shape, per backend its errors against float64, event-timed "
                             "fwd and fwd+bwd, and the kernels with the most GPU time (see above)")
    parser.add_argument("--probe-shape", type=int, nargs=2, default=[256, 7], metavar=("B", "HW"),
                        help="--probe: batch size and context map side (default 256 7)")
    parser.add_argument("--probe-dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                        help="--probe: the inputs' dtype (default float32)")


def select_backends(device: torch.device, requested: Optional[list[str]]) -> tuple[list[str], dict]:
    """The backend names to run on ``device`` and, for the ones left out, why."""
    known = [*BASELINES, *(n for n in BACKEND_NAMES if n != "reference")]
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
    for n in BACKEND_NAMES:
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
    """A callable(face, context, w1, b1, w2, b2) -> (pooled, attn) for backend ``name``.

    Compiled baselines are compiled on first call; call ``torch._dynamo.reset()`` between cases.
    """
    if name == "eager":
        return gla_reference
    if name == "split":
        return gla_split
    if name in ("compile", "split_compile"):
        return torch.compile(gla_reference if name == "compile" else gla_split, dynamic=False)
    return lambda *args: gla(*args, backend=name)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30))


class BackendTimer:
    """One backend on one case: first call, correctness, memory, then one timing per round."""

    def __init__(self, name: str, sets: list[dict], device: torch.device, threads: int):
        self.name, self.sets, self.device, self.threads = name, sets, device, threads
        self.op = make_op(name)
        op = self.op

        def fwd(face, context, w1, b1, w2, b2):
            with torch.no_grad():
                return op(face, context, w1, b1, w2, b2)

        self.fwd = fwd
        self.fwd_rot = Rotator(fwd, [s["inputs"] for s in sets])
        # backward alone: the forward (untimed) builds a fresh graph before each timed backward
        self.make_graph = Rotator(lambda i, g: (op(*i), i, g), [(s["inputs"], s["grads"]) for s in sets])
        self.step = Rotator(lambda i, g: torch.autograd.grad(op(*i), i, g), [(s["inputs"], s["grads"]) for s in sets])
        self.rounds: dict[str, list[float]] = {m: [] for m in MODES}
        self.res: dict = {}

    def first_call(self, expected: Optional[tuple]) -> None:
        s0 = self.sets[0]
        t0 = time.perf_counter()  # first calls: compilation for the compiled baselines
        out = self.fwd(*s0["inputs"])
        torch.autograd.grad(self.op(*s0["inputs"]), s0["inputs"], s0["grads"])
        _sync(self.device)
        self.res["first_call_s"] = time.perf_counter() - t0
        if expected is not None:
            self.res["rel_err_vs_eager"] = max(_rel_err(out[0], expected[0]), _rel_err(out[1], expected[1]))
            self.res["wrong"] = self.res["rel_err_vs_eager"] > WRONG_RTOL

    def time_round(self, min_time: float) -> None:
        d, th = self.device, self.threads
        self.rounds["fwd"].append(time_fn(self.fwd_rot, d, th, min_time, min_samples=3)["median_s"])
        self.rounds["bwd"].append(time_with_setup(self.make_graph, lambda st: torch.autograd.grad(*st), d, th,
                                                  min_time, min_samples=3)["median_s"])
        self.rounds["fwdbwd"].append(time_fn(self.step, d, th, min_time, min_samples=3)["median_s"])

    def measure_memory(self) -> None:
        s0 = self.sets[0]
        self.res["mem_fwd_bytes"] = peak_extra_bytes(lambda: self.fwd(*s0["inputs"]), self.device)
        self.res["mem_fwdbwd_bytes"] = peak_extra_bytes(
            lambda: torch.autograd.grad(self.op(*s0["inputs"]), s0["inputs"], s0["grads"]), self.device)


def summarize(samples: list[float]) -> dict:
    """Median of per-round values with their IQR and extremes (the spread printed)."""
    med = statistics.median(samples)
    q = statistics.quantiles(samples, n=4, method="inclusive") if len(samples) > 1 else [med, med, med]
    return {"median_s": med, "iqr_s": q[2] - q[0], "min_s": min(samples), "max_s": max(samples),
            "rounds": list(samples), "samples": len(samples)}


def bench_case(case: Case, names: list[str], device: torch.device, threads: int, min_time: float,
               limits: dict, log=print, rounds: int = 5) -> dict:
    copies = n_copies(4 * case.B * case.N * case.Dc)
    sets = [make_inputs(case, device, seed) for seed in range(copies)]
    with torch.no_grad():
        expected = gla_reference(*sets[0]["inputs"])
    result = {"case": case.as_dict(), "input_copies": copies, "rounds": rounds, "backends": {}}
    torch._dynamo.reset()  # fresh compiles per case: specialised to its shapes, no recompile limit
    timers = {name: BackendTimer(name, sets, device, threads) for name in names}
    for name, t in timers.items():
        t0 = time.perf_counter()
        t.first_call(None if name == "eager" else expected)
        t.measure_memory()
        log(f"  {case.name:<34} {name:<13} first call + memory ({time.perf_counter() - t0:.1f} s)")
    g = torch.Generator().manual_seed(1)
    mm_sets = [(torch.randn(case.B * case.N, case.Dc, generator=g).to(device),
                torch.randn(case.Dc, case.Hd, generator=g).to(device)) for _ in range(copies)]
    mm_rot, mm_rounds = Rotator(torch.mm, mm_sets), []
    per_round = min_time / rounds
    for r in range(rounds):  # interleaved: every backend once per round
        mm_rounds.append(time_fn(mm_rot, device, threads, per_round, min_samples=3)["median_s"])
        for t in timers.values():
            t.time_round(per_round)
    result["mm"] = summarize(mm_rounds)
    for name, t in timers.items():
        res = dict(t.res)
        for mode in MODES:
            res[mode] = summarize(t.rounds[mode])
            res[mode]["roofline"] = fraction(case, mode, res[mode]["median_s"], limits)
        res["_rounds"] = t.rounds
        result["backends"][name] = res
        log(f"  {case.name:<34} {name:<13} fwd {res['fwd']['median_s'] * 1e3:9.3f} ms"
            f"  fwd+bwd {res['fwdbwd']['median_s'] * 1e3:9.3f} ms")
    result["mm"]["_rounds"] = mm_rounds
    _add_ratios(result)
    for r in [result["mm"], *result["backends"].values()]:
        r.pop("_rounds")
    return result


def _paired(num: list[float], den: list[float]) -> dict:
    """Median and extremes of the per-round ratios num[r] / den[r]."""
    v = [a / b for a, b in zip(num, den)]
    return {"median": statistics.median(v), "min": min(v), "max": max(v)}


def _add_ratios(result: dict) -> None:
    b = result["backends"]
    best = {m: min((n for n in BASELINES if n in b), key=lambda n: b[n][m]["median_s"], default=None)
            for m in MODES}
    result["best_unfused"] = best
    for name, r in b.items():
        r["ratios"], r["ratio_spread"] = {}, {}

        def put(key, num, den):
            p = _paired(num, den)
            r["ratios"][key], r["ratio_spread"][key] = p["median"], (p["min"], p["max"])

        for base in [*BASELINES, "best"]:
            base_name = best if base == "best" else {m: base for m in MODES}
            for mode in MODES:
                if base_name[mode] in b:
                    put(f"speedup_vs_{base}_{mode}", b[base_name[mode]]["_rounds"][mode], r["_rounds"][mode])
            if base in b:
                r["ratios"][f"mem_fwdbwd_vs_{base}"] = r["mem_fwdbwd_bytes"] / max(b[base]["mem_fwdbwd_bytes"], 1)
                r["ratios"][f"mem_fwd_vs_{base}"] = r["mem_fwd_bytes"] / max(b[base]["mem_fwd_bytes"], 1)
        put("fwd_over_mm", r["_rounds"]["fwd"], result["mm"]["_rounds"])


def _fmt_ratio(r: dict, key: str) -> str:
    return f"{r['ratios'][key]:.2f}" if key in r["ratios"] else "-"


def _spread(r: dict, key: str) -> str:
    if key not in r["ratios"]:
        return "-"
    lo, hi = r["ratio_spread"][key]
    return f"{r['ratios'][key]:.2f} [{lo:.2f}-{hi:.2f}]"


def format_table(dev: dict) -> str:
    """One table for one device's results."""
    lim = dev["limits"]
    lines = [
        f"device {dev['device']} ({dev['device_name']}), {dev['threads']} threads; same-run limits: copy "
        f"{lim['copy_bytes_per_s'] / 1e9:.1f} GB/s, fp32 mm {lim['mm_flops_per_s'] / 1e9:.0f} GFLOP/s",
        "times: median ms over the interleaved rounds [fastest-slowest round]; xBest: speed-up over the best "
        "unfused baseline (median of per-round ratios [range]); xE: over eager; mem: peak extra MB; "
        "roof: fraction of the roofline; fwd/mm: forward over a bare torch.mm",
    ]
    head = (f"{'case':<34} {'backend':<13} {'fwd ms':>20} {'bwd ms':>20} {'fwd+bwd ms':>20} "
            f"{'fwd xBest':>17} {'f+b xBest':>17} {'fwd xE':>6} {'f+b xE':>6} {'mem fwd':>8} {'mem f+b':>8} "
            f"{'roof fwd':>8} {'roof f+b':>8} {'fwd/mm':>17}")
    lines += [head, "-" * len(head)]
    for c in dev["cases"]:
        mm = c["mm"]
        for name, r in c["backends"].items():
            t = {m: f"{r[m]['median_s'] * 1e3:.3f} [{r[m]['min_s'] * 1e3:.2f}-{r[m]['max_s'] * 1e3:.2f}]" for m in MODES}
            flag = "  WRONG: rel err %.1e" % r["rel_err_vs_eager"] if r.get("wrong") else ""
            lines.append(
                f"{c['case']['name']:<34} {name:<13} {t['fwd']:>20} {t['bwd']:>20} {t['fwdbwd']:>20} "
                f"{_spread(r, 'speedup_vs_best_fwd'):>17} {_spread(r, 'speedup_vs_best_fwdbwd'):>17} "
                f"{_fmt_ratio(r, 'speedup_vs_eager_fwd'):>6} {_fmt_ratio(r, 'speedup_vs_eager_fwdbwd'):>6} "
                f"{r['mem_fwd_bytes'] / 1e6:8.2f} {r['mem_fwdbwd_bytes'] / 1e6:8.2f} "
                f"{r['fwd']['roofline']['fraction']:8.2f} {r['fwdbwd']['roofline']['fraction']:8.2f} "
                f"{_spread(r, 'fwd_over_mm'):>17}{flag}")
        lines.append(f"{'':<34} {'torch.mm':<13} {mm['median_s'] * 1e3:>9.3f} [{mm['min_s'] * 1e3:.2f}-"
                     f"{mm['max_s'] * 1e3:.2f}] ms  ((B*N, Dc) x (Dc, Hd) alone); best unfused: "
                     + ", ".join(f"{m} {n}" for m, n in c["best_unfused"].items()))
    return "\n".join(lines)


# The CPU bars (measured, not asserted): case filter, ratio key, comparison, threshold.
BAR_CASES = {"paper:B256:7x7:D256/256:Hd128", "hires:B8:56x56:D256/256:Hd128"}
BARS = (
    ("fwd >= 1.8x best unfused", "speedup_vs_best_fwd", ">=", 1.8),
    ("fwd+bwd >= 1.5x best unfused", "speedup_vs_best_fwdbwd", ">=", 1.5),
    ("fwd <= 1.2x torch.mm", "fwd_over_mm", "<=", 1.2),
    ("peak mem f+b <= 1/4 eager", "mem_fwdbwd_vs_eager", "<=", 0.25),
)


def check_bars(dev: dict) -> list[dict]:
    """Each library backend against the issue's bars on the cases they name (CPU bars).

    A bar is judged on the median of the per-round ratios; the range of those ratios is kept."""
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
                spread = r["ratio_spread"].get(key)
                rows.append({"case": c["case"]["name"], "backend": name, "bar": label, "value": v,
                             "spread": spread, "met": ok})
    return rows


def format_bars(rows: list[dict]) -> str:
    def rng(r):
        return f" (rounds {r['spread'][0]:.2f}-{r['spread'][1]:.2f})" if r.get("spread") else ""
    return "\n".join(f"  {'MET ' if r['met'] else 'MISS'} {r['backend']:<7} {r['case']:<34} {r['bar']:<30} "
                     f"measured {r['value']:.2f}{rng(r)}" for r in rows)


def run(args: argparse.Namespace, log=print) -> dict:
    if args.threads < 1:
        raise SystemExit(f"bench.gla: --threads must be >= 1, got {args.threads}")
    if args.rounds < 1:
        raise SystemExit(f"bench.gla: --rounds must be >= 1, got {args.rounds}")
    torch.set_num_threads(args.threads)
    devices = {"cpu": ["cpu"], "cuda": ["cuda"], "all": ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])}
    devices = devices[args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        raise SystemExit("bench.gla: --device cuda but torch.cuda.is_available() is False")
    cases = get_cases(args.suite, args.quick)
    min_time = args.min_time if args.min_time is not None else (0.5 if args.quick else 2.0)
    result = {"meta": {**machine_info(args.threads), "argv": sys.argv, "suite": args.suite, "quick": args.quick,
                       "min_time_s": min_time, "rounds": args.rounds},
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
            dev["cases"].append(bench_case(case, names, device, args.threads, min_time, limits, log,
                                             rounds=args.rounds))
        if dev_name == "cpu":
            dev["bars"] = check_bars(dev)
        result["devices"][dev_name] = dev
    return result


def probe(args: argparse.Namespace) -> int:
    """--probe: one shape on CUDA, each backend's errors, event times and top kernels."""
    require_cuda("bench.gla", "--probe")
    B, hw = args.probe_shape
    if B < 1 or hw < 1:
        raise SystemExit(f"bench.gla: --probe-shape B HW must be positive, got {B} {hw}")
    device, dtype = torch.device("cuda"), getattr(torch, args.probe_dtype)
    names, _ = select_backends(device, args.backends)
    if args.backends is None:  # the compiled baselines only add compile time to a probe
        names = [n for n in names if n not in ("compile", "split_compile")]
    data = make_inputs(Case("probe", B, 256, 256, hw, hw, 128), device, seed=0)
    x64 = [t.detach().double().requires_grad_(True) for t in data["inputs"]]
    x = [t.detach().to(dtype).requires_grad_(True) for t in data["inputs"]]
    gp, ga = data["grads"]
    p64, a64 = gla_reference(*x64)
    expected = [p64, a64, *torch.autograd.grad((p64, a64), x64, (gp.double(), ga.double()))]
    gp, ga = gp.to(dtype), ga.to(dtype)
    labels = ("pooled", "attn", "dface", "dcontext", "dw1", "db1", "dw2", "db2")
    print(f"GLA probe on {torch.cuda.get_device_name(device)}: B={B} {hw}x{hw} Df=Dc=256 Hd=128 {args.probe_dtype}")
    for name in names:
        op = make_op(name)
        pooled, attn = op(*x)
        got = [pooled, attn, *torch.autograd.grad((pooled, attn), x, (gp, ga))]
        errs = {k: float((g.detach().double() - e.detach()).norm() / e.detach().norm().clamp_min(1e-30))
                for k, g, e in zip(labels, got, expected) if k != "db2"}  # db2 is 0: softmax is shift invariant

        def fwd():
            with torch.no_grad():
                op(*x)

        def fwdbwd():
            torch.autograd.grad(op(*x), x, (gp, ga))

        print(f"{name:<13} fwd {event_median_ms(fwd) * 1e3:8.1f} us  fwd+bwd {event_median_ms(fwdbwd) * 1e3:8.1f} us"
              "  rel. errors vs float64: " + " ".join(f"{k} {v:.1e}" for k, v in errs.items()))
        print(kernel_table(fwdbwd, calls=3, rows=8))
    return 0


def main(args: Optional[argparse.Namespace] = None) -> int:
    if args is None:
        parser = argparse.ArgumentParser(prog="python -m bench.gla", description=__doc__.split("\n")[0])
        add_arguments(parser)
        args = parser.parse_args()
    if args.probe:
        return probe(args)
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
