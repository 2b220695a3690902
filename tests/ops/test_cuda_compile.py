"""Every CUDA source in csrc/ compiles with plain nvcc for sm_80 and sm_90.

The .cu files include only CUDA headers, so this runs on machines without a GPU or a CUDA build
of torch (skipped when nvcc is not on the PATH). The ATen binding is built by setup.py only
where torch has CUDA; the GPU tests are in test_cuda.py.
"""
from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

CSRC = pathlib.Path(__file__).resolve().parents[2] / "csrc"
CU_FILES = sorted(CSRC.rglob("*.cu"))
NVCC = shutil.which("nvcc")


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

    import torch

    inc = pathlib.Path(torch.__file__).parent / "include"
    macros = tmp_path / "c10" / "cuda" / "impl"
    macros.mkdir(parents=True)
    (macros / "cuda_cmake_macros.h").write_text("#pragma once\n")
    cmd = ["g++", "-std=c++17", "-fsyntax-only", f"-I{tmp_path}", f"-I{inc}", f"-I{inc / 'torch/csrc/api/include'}",
           f"-I{_cuda_include()}", f"-I{CSRC}", f"-I{sysconfig.get_paths()['include']}",
           str(CSRC / "gla" / "cuda" / "binding.cpp")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
