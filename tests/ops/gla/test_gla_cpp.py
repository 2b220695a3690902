"""The "cpp" backend (glamor_fast._C's CPU kernels): what only it has. The checks every fused
backend passes are in test_gla.py.

Needs the compiled extension: `pip install --no-build-isolation -e .` (CI does this). A missing
build fails every test here with that instruction rather than skipping: it is a real failure.
"""
from __future__ import annotations

import pytest
import torch

from glamor_fast.ops import extension as _ext
from glamor_fast.ops.gla import compiled, gla
from tests.helpers import make_gla_inputs, run_gla, sliced_context


@pytest.fixture(autouse=True)
def _extension_built():
    if _ext.load_error() is not None:
        pytest.fail(f"glamor_fast._C is not importable: {_ext.load_error()}")
    yield


def cpp(*x):
    return gla(*x, backend="cpp")


@pytest.mark.parametrize("kind", ["gaps", "cl_gaps", "strided"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16bit_context_any_strides_same_as_contiguous(kind, dtype, two_threads):
    """A 16-bit context is converted tile by tile from whatever strides it has: a non-contiguous
    view gives bit for bit what its contiguous copy gives (B=7, 7x7: batched tiles too)."""
    x = [None if t is None else t.to(dtype) for t in
         make_gla_inputs(B=7, Df=8, Dc=16, H=7, W=7, Hd=16, folded_bn=True)]
    x[1] = sliced_context(x[1], kind)
    gp, ga = torch.randn(7, 16).to(dtype), torch.randn(7, 7, 7).to(dtype)
    got = run_gla(cpp, x, gp, ga)
    want = run_gla(cpp, [x[0], x[1].contiguous(), *x[2:]], gp, ga)
    for u, v in zip([got[0], got[1], *got[2]], [want[0], want[1], *want[2]]):
        assert u.dtype == dtype and torch.equal(u, v)


def test_one_and_two_threads_agree():
    x = make_gla_inputs(B=1, Df=6, Dc=9, H=10, W=20, Hd=5, folded_bn=True)  # B < threads: split cells
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run_gla(cpp, x)
        torch.set_num_threads(2)
        two = run_gla(cpp, x, one[3], one[4])
    finally:
        torch.set_num_threads(before)
    # float64, different chunking of the same sums: rounding-level differences only.
    for u, v in zip(one[:2] + tuple(one[2]), two[:2] + tuple(two[2])):
        torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-14)


def test_bad_inputs_raise_clear_errors():
    x = make_gla_inputs(B=2, Df=3, Dc=4, H=2, W=3, Hd=3)
    op = torch.ops.glamor_fast.gla_forward
    bad_w1 = list(x)
    bad_w1[2] = torch.randn(3, 6, dtype=torch.float64)
    with pytest.raises(RuntimeError, match=r"`w1` must be \(Hd, Df \+ Dc\)"):
        op(*bad_w1)
    bad_dtype = list(x)
    bad_dtype[3] = x[3].float()
    with pytest.raises(RuntimeError, match="`b1` has dtype Float"):
        op(*bad_dtype)
    bad_ctx = list(x)
    bad_ctx[1] = x[1][:, :, 0]
    with pytest.raises(RuntimeError, match=r"`context` must be \(B, Dc, H, W\)"):
        op(*bad_ctx)
    bad_int = [t.to(torch.int32) if t is not None else None for t in x]
    with pytest.raises(RuntimeError, match="unsupported dtype Int"):
        op(*bad_int)
    with pytest.raises(RuntimeError, match="`hidden_scale` and `hidden_shift` go together"):
        op(*x[:6], torch.ones(3, dtype=torch.float64), None)
    # Through the public entry point the Python checks answer first.
    with pytest.raises(ValueError, match="`b1` must have shape"):
        gla(x[0], x[1], x[2], x[2][:, 0:2].sum(1).repeat(2), x[4], x[5], backend="cpp")


def test_backend_availability_messages(monkeypatch):
    from glamor_fast.ops import registry

    assert compiled.cpp_unavailable_reason(torch.device("cpu"), torch.float32) is None
    assert "CPU tensors" in compiled.cpp_unavailable_reason(torch.device("cuda"), torch.float32)
    if not torch.cuda.is_available():
        reason = compiled.cuda_unavailable_reason(torch.device("cuda"), torch.float32)
        assert reason is not None and ("without CUDA" in reason or "no CUDA device" in reason)
    monkeypatch.setattr(_ext, "_LOAD_ERROR", "the compiled extension glamor_fast._C cannot be imported (x); "
                        + _ext.BUILD_HINT)
    with pytest.raises(RuntimeError, match=r"pip install --no-build-isolation -e \."):
        registry.choose_backend("cpp", torch.device("cpu"), torch.float32)


@pytest.mark.parametrize("mode", ["pack", "aten"])
def test_other_gemm_paths_match_too(mode):
    """GLAMOR_FAST_GEMM=pack (MKL packed W1c, float32) and =aten (at::mm on views) are read once
    per process, so the float32 checks run again in a subprocess with each."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    env = dict(os.environ, GLAMOR_FAST_GEMM=mode)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(here / "test_gla.py"), str(Path(__file__)),
         "-k", "cpp and (low_precision and (nchw or channels_last) or scores_1e3_float32 or one_and_two_threads "
         "or glamornet_float64)"],
        cwd=here.parents[2], env=env, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "deselected" in out.stdout
