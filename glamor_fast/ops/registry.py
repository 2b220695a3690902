"""Which backend runs each op: the one place a backend is chosen.

Every op has a table of backends, each with a function that says, for a device and dtype,
None (it runs) or why not (and how to make it available). ``backend="auto"`` walks the op's
``AUTO_POLICY`` entry for the device type, first available wins; each entry carries the
measurement that made it (bench/RESULTS.md has the runs).

    available_backends(device, dtype=torch.float32, op="gla") -> names that can run there
    choose_backend(backend, device, dtype, op="gla") -> the name "auto" or a name means here,
        or a BackendUnavailableError / ValueError naming the backends that can run

The availability functions live with their op (``glamor_fast.ops.<op>``) and are imported
lazily by name, so ``import glamor_fast`` stays cheap and a backend whose dependencies are
missing fails only when it is asked for.
"""
from __future__ import annotations

import importlib
import logging
from typing import Callable, Optional

import torch

log = logging.getLogger("glamor_fast")

# op -> backend -> "module:function" giving unavailable_reason(device, dtype), or None (always runs).
BACKENDS: dict[str, dict[str, Optional[str]]] = {
    "gla": {
        "reference": None,
        "triton": "glamor_fast.ops.gla.triton:unavailable_reason",
        "cpp": "glamor_fast.ops.gla.compiled:cpp_unavailable_reason",
        "cuda": "glamor_fast.ops.gla.compiled:cuda_unavailable_reason",
    },
    "gla_hidden_stats": {
        "reference": None,
        "cpp": "glamor_fast.ops.gla.hidden_stats:cpp_unavailable_reason",
    },
    "bn_relu_pool": {
        "reference": None,
        "cpp": "glamor_fast.ops.bn_relu_pool:cpp_unavailable_reason",
        "triton": "glamor_fast.ops.bn_relu_pool:triton_unavailable_reason",
    },
    "relu_pool": {
        "reference": None,
        "cpp": "glamor_fast.ops.relu_pool:cpp_unavailable_reason",
    },
    "stem_conv": {
        "reference": None,
        "cpp": "glamor_fast.ops.stem_conv:cpp_unavailable_reason",
    },
}

# What backend="auto" tries, first available wins: (op, device type) -> names, with the
# measurement behind each choice (bench/RESULTS.md holds the runs).
AUTO_POLICY: dict[tuple, tuple[str, ...]] = {
    # GLA on CUDA: neither fused backend beat plain PyTorch in wall time (H100 2026-11-25, H200
    # 2026-11-26: host-bound at the paper's sizes, ~1 ms of host time per call).
    ("gla", "cuda"): ("reference", "triton", "cuda"),
    # GLA on the CPU: cpp fwd+bwd 1.23x the best unfused code (torch.compile of the split
    # formulation) at B=256 7x7, 2 threads, Intel Xeon with AMX, 2026-11-26.
    ("gla", "cpu"): ("cpp", "reference"),
    ("gla_hidden_stats", "cpu"): ("cpp", "reference"),  # 16.3 vs 44.5 ms fwd+bwd, B=256 7x7
    # The block on the CPU: 13.7-16.2 ms fused vs 48-52 eager, 55-57 compiled ((32,32,112,112)
    # fwd+bwd, 2-core Xeon). On CUDA the Triton block was 2.4x slower than cuDNN in wall time
    # (H200: 2.2 vs 0.9 ms, host-bound), so auto keeps cuDNN's ops there.
    ("bn_relu_pool", "cpu"): ("cpp", "reference"),
    # Inference kernels: no index writes (relu_pool) / no full-size conv output (stem_conv).
    ("relu_pool", "cpu"): ("cpp", "reference"),
    ("stem_conv", "cpu"): ("cpp", "reference"),
}

# Exceptions by dtype: (op, device type, dtype) -> names. On the CPU cpp computes bfloat16 in
# float32, which PyTorch's own bfloat16 kernels matched (AMX Xeon, 2 threads, B=256 7x7, five
# interleaved rounds, 2026-11-26: fwd / fwd+bwd ms cpp 4.23 / 13.0, reference 3.25 / 12.9).
# float16 there (no AMX-FP16): cpp 4.38 / 13.8, reference 7.85 / 28.6, so it keeps cpp.
AUTO_POLICY_BY_DTYPE: dict[tuple, tuple[str, ...]] = {
    ("gla", "cpu", torch.bfloat16): ("reference",),
}


class BackendUnavailableError(RuntimeError, ValueError):
    """A known backend that cannot run on this device/dtype (the message says why and what can).

    A ValueError too, as an unknown backend name is: code that reports a bad ``backend`` argument
    treats both alike.
    """


_reason_fns: dict[tuple[str, str], Callable] = {}
_auto_logged: set = set()


def _ops_backends(op: str) -> dict[str, Optional[str]]:
    if op not in BACKENDS:
        raise ValueError(f"unknown op {op!r}; known ops: {', '.join(BACKENDS)}")
    return BACKENDS[op]


def unavailable_reason(name: str, device: torch.device, dtype: torch.dtype, op: str = "gla") -> Optional[str]:
    """None when backend ``name`` of ``op`` runs on (device, dtype), else the reason it does not."""
    target = _ops_backends(op)[name]
    if target is None:
        return None
    fn = _reason_fns.get((op, name))
    if fn is None:
        module, attr = target.split(":")
        try:
            fn = getattr(importlib.import_module(module), attr)
        except ImportError as exc:  # a backend whose dependencies are absent
            return f"cannot import {module}: {exc}"
        _reason_fns[(op, name)] = fn
    return fn(torch.device(device), dtype)


def available_backends(device: torch.device, dtype: torch.dtype = torch.float32, op: str = "gla") -> list[str]:
    """Names of ``op``'s backends that can run on tensors of this device and dtype."""
    return [n for n in _ops_backends(op) if unavailable_reason(n, device, dtype, op) is None]


def auto_policy(op: str, device: torch.device, dtype: torch.dtype) -> tuple[str, ...]:
    """The names ``backend="auto"`` tries for ``op`` on this device and dtype, in order."""
    device = torch.device(device)
    return AUTO_POLICY_BY_DTYPE.get((op, device.type, dtype),
                                    AUTO_POLICY.get((op, device.type), ("reference",)))


def choose_backend(backend: str, device: torch.device, dtype: torch.dtype, op: str = "gla") -> str:
    """The backend name that ``backend`` ("auto" or a name) means for ``op`` here, or a clear error."""
    if not isinstance(backend, str):
        raise TypeError(f"{op}: `backend` must be a string, got {type(backend).__name__}")
    device = torch.device(device)
    names = _ops_backends(op)
    if backend == "auto":
        for name in auto_policy(op, device, dtype):
            if unavailable_reason(name, device, dtype, op) is None:
                key = (op, device.type, dtype, name)
                if key not in _auto_logged:
                    _auto_logged.add(key)
                    log.info("%s backend='auto' chose %r for %s %s tensors", op, name, device.type, dtype)
                return name
        return "reference"
    if backend not in names:
        raise ValueError(
            f"{op}: unknown backend {backend!r}; known backends: {', '.join(names)} or 'auto'. "
            f"Available for {device.type} {dtype}: {', '.join(available_backends(device, dtype, op))}"
        )
    reason = unavailable_reason(backend, device, dtype, op)
    if reason is not None:
        raise BackendUnavailableError(
            f"{op}: backend {backend!r} is not available for {device.type} {dtype} tensors: {reason}. "
            f"Available: {', '.join(available_backends(device, dtype, op))}"
        )
    return backend


def _assume_constant_result(fn):
    """``torch.compiler.assume_constant_result`` without importing torch._dynamo, which cost about
    a second of every command's start-up: the decorator only sets this attribute
    (tests/ops/test_registry.py checks that it still does)."""
    fn._dynamo_marked_constant = True
    return fn


@_assume_constant_result
def choose_for_compile(backend: str, device: torch.device, dtype: torch.dtype, op: str = "gla") -> str:
    """``choose_backend`` as torch.compile sees it: run once while tracing and kept as a constant
    (the imports and checks inside are not traceable, and their answer cannot change)."""
    return choose_backend(backend, device, dtype, op)
