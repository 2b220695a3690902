"""The "cuda" backend (csrc/gla/cuda/): what only it has. The checks every fused backend passes
are in test_gla.py (its cuda cases are ``gpu``-marked and skip without a CUDA device).

Where there is a GPU, glamor_fast._C must have been built with CUDA
(`pip install --no-build-isolation -e .` with a CUDA build of torch): a missing kernel fails.
The CUDA sources themselves compile with plain nvcc (and the ATen binding with g++) on any
machine that has them, GPU or not.
"""
from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest
import torch

from glamor_fast.ops import extension as _ext
from glamor_fast.ops.gla import gla
from tests.conftest import requires_cuda
from tests.helpers import make_gla_inputs, run_gla

CSRC = pathlib.Path(__file__).resolve().parents[3] / "csrc"
CU_FILES = sorted(CSRC.rglob("*.cu"))
NVCC = shutil.which("nvcc")


@pytest.fixture
def cuda_kernels_built():
    if _ext.load_error() is not None:
        pytest.fail(f"glamor_fast._C is not importable: {_ext.load_error()}")
    if _ext.kernel_missing("gla_forward", "CUDA") is not None:
        pytest.fail("glamor_fast._C has no CUDA kernels: rebuild with a CUDA build of torch "
                    "and nvcc on the PATH (`pip install --no-build-isolation -e .`)")
    yield


def _to_cuda(x):
    return [None if t is None else t.cuda() for t in x]


@requires_cuda
def test_cuda_matches_cpp_float32(cuda_kernels_built):
    x = make_gla_inputs(B=2, Df=16, Dc=24, H=10, W=13, Hd=8, dtype=torch.float32, channels_last=True)
    p, a, g, gp, ga = run_gla(lambda *t: gla(*t, backend="cuda"), _to_cuda(x))
    cp, ca, cg, _, _ = run_gla(lambda *t: gla(*t, backend="cpp"), x, gp.cpu(), ga.cpu())
    for u, v in zip([p, a] + g, [cp, ca] + cg):
        torch.testing.assert_close(u.cpu(), v, rtol=1e-4, atol=1e-5)  # fp32, different sum orders


@requires_cuda
def test_wrong_device_mix_raises(cuda_kernels_built):
    x = _to_cuda(make_gla_inputs(B=2, Df=3, Dc=4, H=2, W=3, Hd=3))
    x[2] = x[2].cpu()
    with pytest.raises(RuntimeError, match="`w1` is on cpu"):
        torch.ops.glamor_fast.gla_forward(*x)


def test_there_are_cuda_sources():
    assert CU_FILES, f"no .cu files under {CSRC}"


@pytest.mark.skipif(NVCC is None, reason="nvcc is not on the PATH")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("source", CU_FILES, ids=lambda p: str(p.relative_to(CSRC)))
def test_nvcc_compiles(source, arch, tmp_path):
    cmd = [NVCC, "-c", "-std=c++17", f"-arch={arch}", str(source), "-o", str(tmp_path / "out.o")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    assert (tmp_path / "out.o").stat().st_size > 0


def _cuda_include():
    for root in (pathlib.Path("/usr/local/cuda/include"),) + tuple(sorted(pathlib.Path("/usr/local").glob("cuda-*/include"))):
        if (root / "cuda_runtime_api.h").exists():
            return root
    return None


@pytest.mark.skipif(shutil.which("g++") is None or _cuda_include() is None,
                    reason="needs g++ and the CUDA runtime headers")
def test_cuda_binding_compiles_against_torch_headers(tmp_path):
    """The ATen side of the CUDA backend (csrc/gla/cuda/binding.cpp) is built only where torch
    has CUDA, never in CI: check it here with g++ -fsyntax-only against the installed torch's
    headers (a CPU wheel ships c10/cuda too, all but one generated macros header)."""
    import sysconfig

    inc = pathlib.Path(torch.__file__).parent / "include"
    macros = tmp_path / "c10" / "cuda" / "impl"
    macros.mkdir(parents=True)
    (macros / "cuda_cmake_macros.h").write_text("#pragma once\n")
    cmd = ["g++", "-std=c++17", "-fsyntax-only", f"-I{tmp_path}", f"-I{inc}", f"-I{inc / 'torch/csrc/api/include'}",
           f"-I{_cuda_include()}", f"-I{CSRC}", f"-I{sysconfig.get_paths()['include']}",
           str(CSRC / "gla" / "cuda" / "binding.cpp")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
