"""The cpp backend's float32 backward on AMX (csrc/gla/cpu/bf16x3.cpp): its two GEMMs as exact
bf16x3 products, checked against the float64 reference and against the float32 GEMM path
(GLAMOR_FAST_BF16X3=0) on fresh random inputs.

Tolerance: float32 PyTorch's own error against float64 (twice it, plus eps x the output's scale,
as in test_gla.py). The split is exact, so only the float32 accumulation order differs from an
sgemm: the bound is the same one the float32 GEMM path is held to.
Skipped where the CPU has no AMX (the path is then never taken: GLAMOR_FAST_BF16X3 has no effect).
"""
from __future__ import annotations

import pytest
import torch

from glamor_fast.ops import gla_reference
from glamor_fast.ops.gla import gla
from glamor_fast.ops import extension as _ext
from tests.helpers import make_gla_inputs

pytestmark = pytest.mark.skipif(
    _ext.load_error() is not None
    or not (torch.backends.mkldnn.is_available() and torch.cpu._is_amx_tile_supported()),
    reason="the bf16x3 backward needs AMX (and the compiled extension)",
)

EPS32 = torch.finfo(torch.float32).eps
NAMES = ["face", "context", "w1", "b1", "w2", "b2", "hidden_scale", "hidden_shift"]


def _run(fn, x, gp, ga):
    x = [None if t is None else t.detach().clone().requires_grad_(True) for t in x]
    p, a = fn(*x)
    grads = torch.autograd.grad((p * gp).sum() + (a * ga).sum(), [t for t in x if t is not None])
    return [p.detach(), a.detach(), *grads]


def _cpp(recompute):
    return lambda *x: gla(*x, backend="cpp", recompute=recompute)


def _err(u, v):
    return (u.double() - v.double()).abs().max().item()


# Dc and Hd multiples of 16 (the path's condition); cell counts that pad (odd, not multiples of
# 32), batched tiles of 7x7 elements, tiles split across chunks, one cell, both layouts.
CASES = {
    "paper_like_7x7": dict(B=5, Df=16, Dc=48, H=7, W=7, Hd=32),
    "7x7_bn_cl": dict(B=7, Df=8, Dc=32, H=7, W=7, Hd=48, folded_bn=True, channels_last=True),
    "odd_cells": dict(B=3, Df=8, Dc=16, H=3, W=5, Hd=16),
    "odd_cells_cl": dict(B=3, Df=8, Dc=16, H=3, W=5, Hd=16, channels_last=True),
    "n1": dict(B=4, Df=8, Dc=16, H=1, W=1, Hd=16),
    "b1_chunks": dict(B=1, Df=8, Dc=64, H=19, W=23, Hd=80),
    "b1_chunks_cl_bn": dict(B=1, Df=8, Dc=64, H=19, W=23, Hd=80, channels_last=True, folded_bn=True),
    "wide": dict(B=2, Df=8, Dc=144, H=6, W=9, Hd=112),
    "scores_1e3": dict(B=3, Df=8, Dc=32, H=5, W=6, Hd=32, score_scale=1e3),
}


@pytest.mark.parametrize("recompute", [True, False], ids=["recompute", "saved"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_float64_like_float32_pytorch(case, recompute, two_threads, monkeypatch):
    x64 = make_gla_inputs(**CASES[case])
    x32 = [None if t is None else t.float() for t in x64]
    gp = torch.randn(x64[0].shape[0], x64[1].shape[1], dtype=torch.float64)
    ga = torch.randn(x64[1].shape[0], *x64[1].shape[2:], dtype=torch.float64)
    ref = _run(gla_reference, x64, gp, ga)
    torch_f32 = _run(gla_reference, x32, gp.float(), ga.float())
    ours = _run(_cpp(recompute), x32, gp.float(), ga.float())
    monkeypatch.setenv("GLAMOR_FAST_BF16X3", "0")
    sgemm = _run(_cpp(recompute), x32, gp.float(), ga.float())
    names = ["pooled", "attn"] + NAMES
    for name, k, s, r, v in zip(names, ours, sgemm, torch_f32, ref):
        atol = EPS32 * (1.0 + v.abs().max().item())
        assert _err(k, v) <= 2 * _err(s, v) + atol, (name, _err(k, v), _err(s, v))
        # Scores ~1e3 amplify the forward's float32 score error (the same kernel on both paths;
        # test_gla.py::test_scores_1e3_float32_no_nan_and_close bounds it): only the paths compare.
        if case != "scores_1e3":
            assert _err(k, v) <= 2 * _err(r, v) + atol, (name, _err(k, v), _err(r, v))
    # the path really ran: the GEMM-fed gradients differ from the sgemm path's in rounding
    if case != "n1":
        assert not torch.equal(ours[2 + 1], sgemm[2 + 1]) or not torch.equal(ours[2 + 2], sgemm[2 + 2])


@pytest.mark.parametrize("case", ["paper_like_7x7", "odd_cells_cl"])
def test_only_context_or_only_weights(case, two_threads):
    """Either GEMM alone (the other gradient not asked for) gives the same numbers as both."""
    x = [None if t is None else t.float() for t in make_gla_inputs(**CASES[case])]
    full = _run(_cpp(True), x, torch.randn(x[0].shape[0], x[1].shape[1]), torch.randn(x[1].shape[0], *x[1].shape[2:]))
    torch.manual_seed(0)
    gp, ga = torch.randn(x[0].shape[0], x[1].shape[1]), torch.randn(x[1].shape[0], *x[1].shape[2:])
    full = _run(_cpp(True), x, gp, ga)
    for which in (1, 2):
        xs = [None if t is None else t.detach().clone() for t in x]
        xs[which].requires_grad_(True)
        p, a = gla(*xs, backend="cpp", recompute=True)
        (g,) = torch.autograd.grad((p * gp).sum() + (a * ga).sum(), [xs[which]])
        assert torch.equal(g, full[2 + which]), NAMES[which]


def test_exact_zeros_on_the_bf16x3_path(two_threads):
    """One cell, and a one-hot softmax: the gradients of face, w1, b1 and w2 are exactly 0."""
    n1 = make_gla_inputs(B=3, Df=16, Dc=32, H=1, W=1, Hd=16, dtype=torch.float32)
    n1[2] = n1[2] * 30
    hot = make_gla_inputs(B=2, Df=16, Dc=32, H=7, W=7, Hd=32, dtype=torch.float32, channels_last=True)
    hot[1][:, :, 1, 2] += 40.0
    hot[4] = hot[4].abs() * 1e3
    for x in (n1, hot):
        gp = torch.randn(x[0].shape[0], x[1].shape[1])
        ga = torch.randn(x[1].shape[0], *x[1].shape[2:])
        g = _run(_cpp(True), x, gp, ga)[2:]
        r = _run(gla_reference, x, gp, ga)[2:]
        for i in (0, 2, 3, 4):
            assert (r[i] == 0).all() and (g[i] == 0).all(), (NAMES[i], g[i].abs().max().item())
        torch.testing.assert_close(g[1], r[1])


@pytest.mark.parametrize("where", ["context_inf", "context_nan", "grad_nan"])
def test_nonfinite_tiles_fall_back_and_propagate(where, two_threads):
    """A non-finite Y_i = ds_i v_i (or ds) sends its tile to the float32 GEMMs: the non-finite
    pattern is PyTorch's and every finite entry stays close."""
    x = make_gla_inputs(B=6, Df=8, Dc=32, H=7, W=7, Hd=32, dtype=torch.float32)
    gp = torch.randn(6, 32)
    ga = torch.randn(6, 7, 7)
    if where == "context_inf":
        x[1][4, 3, 2, 2] = float("inf")
    elif where == "context_nan":
        x[1][1, 0, 6, 0] = float("nan")
    else:
        gp[2, 5] = float("nan")
    g = _run(_cpp(True), x, gp, ga)
    r = _run(gla_reference, x, gp, ga)
    for name, u, v in zip(["pooled", "attn"] + NAMES, g, r):
        assert torch.equal(torch.isfinite(u), torch.isfinite(v)), name
        fin = torch.isfinite(v)
        torch.testing.assert_close(u[fin], v[fin], rtol=1e-4, atol=1e-5, msg=name)


def test_large_magnitudes_keep_float32_accuracy(two_threads, monkeypatch):
    """Context ~1e4 and gradients ~1e3: the split keeps all 24 bits, so the error stays that of
    float32 (relative to the output's scale), not bfloat16's 2^-8."""
    x64 = make_gla_inputs(B=4, Df=16, Dc=32, H=7, W=7, Hd=32)
    x64[1] = x64[1] * 1e4
    gp = torch.randn(4, 32, dtype=torch.float64) * 1e3
    ga = torch.randn(4, 7, 7, dtype=torch.float64) * 1e3
    x32 = [None if t is None else t.float() for t in x64]
    ref = _run(gla_reference, x64, gp, ga)
    ours = _run(_cpp(True), x32, gp.float(), ga.float())
    monkeypatch.setenv("GLAMOR_FAST_BF16X3", "0")
    sgemm = _run(_cpp(True), x32, gp.float(), ga.float())
    for name, k, s, v in zip(["pooled", "attn"] + NAMES, ours, sgemm, ref):
        scale = 1.0 + v.abs().max().item()
        assert _err(k, v) <= 2 * _err(s, v) + EPS32 * scale, (name, _err(k, v), _err(s, v))
        assert _err(k, v) <= 1e-4 * scale, name  # bf16 alone would be ~4e-3


def test_deterministic_bitwise(two_threads):
    x = make_gla_inputs(B=9, Df=8, Dc=48, H=7, W=7, Hd=32, dtype=torch.float32, folded_bn=True)
    gp, ga = torch.randn(9, 48), torch.randn(9, 7, 7)
    first = _run(_cpp(True), x, gp, ga)
    for u, v in zip(first, _run(_cpp(True), x, gp, ga)):
        assert torch.equal(u, v)
