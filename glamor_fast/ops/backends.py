"""The backend registry behind ``gla(backend=...)``.

A backend is a module exposing two functions:

    unavailable_reason(device: torch.device, dtype: torch.dtype) -> str | None
        None when the backend can run on tensors of this device and dtype, else why not
        (and how to make it available).
    gla(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift, deterministic, recompute)
        -> (pooled, attn), differentiable in every input, inputs already validated by
        ``check_gla_inputs``; ``recompute`` as documented on ``glamor_fast.ops.gla``.

Modules are imported lazily, so ``import glamor_fast`` stays cheap and a backend whose
dependencies are missing only fails when it is asked for.
"""
from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import Optional

import torch

log = logging.getLogger("glamor_fast")

BACKEND_MODULES = {
    "reference": "glamor_fast.ops.reference_backend",
    "triton": "glamor_fast.ops.triton_backend",
    "cpp": "glamor_fast.ops.cpp_backend",
    "cuda": "glamor_fast.ops.cuda_backend",
}

# What backend="auto" tries, fastest first, per device type (measured in bench/RESULTS.md).
# On CUDA the fused kernels do not yet beat plain PyTorch (H100, 2026-11-25: the op is bound by
# host-side launch overhead at the paper's sizes, and the fused kernels' GPU time is no lower),
# so auto keeps the reference there; backend="triton" / "cuda" remain selectable.
AUTO_PREFERENCE = {
    "cuda": ("reference", "triton", "cuda"),
    "cpu": ("cpp", "reference"),
}


# Exceptions by (device type, dtype), measured. On the CPU `cpp` computes bfloat16 in float32,
# which PyTorch's own bfloat16 kernels match or beat where the CPU has them (Intel Xeon with AMX,
# 2 threads, B=256 7x7, 5 interleaved rounds, 2026-11-26: fwd / fwd+bwd ms, cpp 4.23 / 13.0,
# reference 3.25 / 12.9). float16 there (no AMX-FP16): cpp 4.38 / 13.8, reference 7.85 / 28.6.
AUTO_PREFERENCE_BY_DTYPE = {
    ("cpu", torch.bfloat16): ("reference",),
}


class BackendUnavailableError(RuntimeError, ValueError):
    """A known GLA backend that cannot run on this device/dtype (the message says why and what can).

    A ValueError too, as an unknown backend name is: code that reports a bad ``backend`` argument
    treats both alike.
    """


_auto_logged: set = set()
_loaded: dict[str, ModuleType] = {}


def _load(name: str) -> tuple[Optional[ModuleType], Optional[str]]:
    try:
        module = importlib.import_module(BACKEND_MODULES[name])
    except ImportError as exc:  # a backend whose dependencies are absent
        return None, f"cannot import {BACKEND_MODULES[name]}: {exc}"
    _loaded[name] = module
    return module, None


def unavailable_reason(name: str, device: torch.device, dtype: torch.dtype) -> Optional[str]:
    """None when backend ``name`` runs on (device, dtype), else the reason it does not."""
    module, err = _load(name)
    if module is None:
        return err
    return module.unavailable_reason(device, dtype)


def available_backends(device: torch.device, dtype: torch.dtype = torch.float32) -> list[str]:
    """Names of the backends that can run on tensors of this device and dtype."""
    return [n for n in BACKEND_MODULES if unavailable_reason(n, device, dtype) is None]


def choose_backend(backend: str, device: torch.device, dtype: torch.dtype) -> str:
    """The backend name that ``backend`` ("auto" or a name) means here, or a clear error."""
    if not isinstance(backend, str):
        raise TypeError(f"gla: `backend` must be a string, got {type(backend).__name__}")
    if backend == "auto":
        prefs = AUTO_PREFERENCE_BY_DTYPE.get((device.type, dtype), AUTO_PREFERENCE.get(device.type, ("reference",)))
        for name in prefs:
            if unavailable_reason(name, device, dtype) is None:
                key = (device.type, dtype, name)
                if key not in _auto_logged:
                    _auto_logged.add(key)
                    log.info("gla backend='auto' chose %r for %s %s tensors", name, device.type, dtype)
                return name
        return "reference"
    if backend not in BACKEND_MODULES:
        raise ValueError(
            f"gla: unknown backend {backend!r}; known backends: {', '.join(BACKEND_MODULES)} or 'auto'. "
            f"Available for {device.type} {dtype}: {', '.join(available_backends(device, dtype))}"
        )
    reason = unavailable_reason(backend, device, dtype)
    if reason is not None:
        raise BackendUnavailableError(
            f"gla: backend {backend!r} is not available for {device.type} {dtype} tensors: {reason}. "
            f"Available: {', '.join(available_backends(device, dtype))}"
        )
    return backend


def _assume_constant_result(fn):
    """``torch.compiler.assume_constant_result`` without importing torch._dynamo, which cost about
    a second of every command's start-up: the decorator only sets this attribute
    (tests/ops/test_dispatch.py checks that it still does)."""
    fn._dynamo_marked_constant = True
    return fn


@_assume_constant_result
def _choose_for_compile(backend: str, device: torch.device, dtype: torch.dtype) -> str:
    # torch.compile runs this once while tracing and keeps the name as a constant: the
    # imports and checks inside are not traceable, and their answer cannot change.
    return choose_backend(backend, device, dtype)


def resolve(backend: str, device: torch.device, dtype: torch.dtype) -> ModuleType:
    """The backend module for ``backend`` ("auto" or a name), or a clear error."""
    name = _choose_for_compile(backend, device, dtype)
    return _loaded[name]
