"""The "cpp" backend (csrc/gla/cpu/gla.cpp) against gla_reference.

Needs the compiled extension: `pip install --no-build-isolation -e .` (CI does this). A missing
build fails every test here with that instruction rather than skipping: it is a real failure.
"""
from __future__ import annotations

import pytest
import torch

from glamor_fast.ops import gla_reference
from glamor_fast.ops.gla import gla
from glamor_fast.ops import extension as _ext
from glamor_fast.ops.gla import compiled
from tests.helpers import make_gla_inputs


@pytest.fixture(autouse=True)
def _extension_built():
    if _ext.load_error() is not None:
        pytest.fail(f"glamor_fast._C is not importable: {_ext.load_error()}")
    yield


def _params(x):
    return [t for t in x if t is not None]


def _run(fn, x, gp=None, ga=None):
    """Forward of fn on x and the gradients of sum(p*gp) + sum(a*ga) w.r.t. every input."""
    x = [None if t is None else t.detach().clone().requires_grad_(True) for t in x]
    p, a = fn(*x)
    # drawn on the CPU so a CUDA run and its CPU reference see the same numbers
    gp = torch.randn(p.shape, dtype=torch.float64).to(p.device, p.dtype) if gp is None else gp
    ga = torch.randn(a.shape, dtype=torch.float64).to(a.device, a.dtype) if ga is None else ga
    loss = (p * gp).sum() + (a * ga).sum()
    grads = torch.autograd.grad(loss, _params(x))
    return p.detach(), a.detach(), list(grads), gp, ga


def cpp(*x):
    return gla(*x, backend="cpp")


def cpp_saved(*x):
    """The cpp backend with the hidden layer saved by the forward (recompute=False)."""
    return gla(*x, backend="cpp", recompute=False)


def cpp_recomputed(*x):
    return gla(*x, backend="cpp", recompute=True)


def _sliced(x, kind):
    """Replace x's context by a non-contiguous view of the same shape (and fresh values)."""
    B, Dc, H, W = x[1].shape
    if kind == "gaps":  # NCHW rows of channels with a gap: cells still unit stride
        ctx = torch.randn(B, Dc + 3, H, W, dtype=x[1].dtype)[:, 2:Dc + 2]
    elif kind == "cl_gaps":  # channels_last with padded channels: channels unit stride
        ctx = torch.randn(B, Dc + 3, H, W, dtype=x[1].dtype).contiguous(memory_format=torch.channels_last)[:, 1:Dc + 1]
    else:  # "strided": neither cells nor channels unit stride -> packed per tile
        ctx = torch.randn(B, 2 * Dc, H + 1, 2 * W, dtype=x[1].dtype)[:, ::2, 1:, ::2]
    assert ctx.shape == (B, Dc, H, W) and not ctx.is_contiguous()
    x = list(x)
    x[1] = ctx
    return x


# Shapes of the grid: N=1, N=49, B=1, odd channel counts, N not a multiple of the tile.
GRID = {
    "n1": dict(B=2, H=1, W=1),
    "b1": dict(B=1, H=3, W=5),
    "n49": dict(B=2, Df=8, Dc=9, H=7, W=7, Hd=6),
    "odd": dict(B=3, Df=5, Dc=7, H=3, W=5, Hd=3),
    "bn": dict(B=2, Df=5, Dc=7, H=4, W=5, Hd=3, folded_bn=True),
    "channels_last": dict(B=2, Df=5, Dc=7, H=3, W=5, Hd=4, channels_last=True),
    "channels_last_bn": dict(B=2, Df=4, Dc=6, H=5, W=3, Hd=5, channels_last=True, folded_bn=True),
    "scores_1e3": dict(B=3, Df=5, Dc=7, H=4, W=6, Hd=3, score_scale=1e3),
    "scores_1e3_bn": dict(B=2, Df=5, Dc=7, H=4, W=6, Hd=3, score_scale=1e3, folded_bn=True),
    "tile_split": dict(B=1, Df=6, Dc=11, H=10, W=20, Hd=5),       # B < threads: chunks of cells
    "tiles_uneven": dict(B=3, Df=3, Dc=5, H=17, W=19, Hd=4),      # several tiles, ragged last
}


def _assert_matches_reference_f64(x, fn=cpp):
    p, a, g, gp, ga = _run(fn, x)
    rp, ra, rg, _, _ = _run(gla_reference, x, gp, ga)
    # float64 on both sides: the fused kernel differs from the literal one only in summation
    # order (~1e-16 relative). 1e-9 relative leaves room for scores ~1e3, where a score error
    # of ~1e-13 shows up as a relative error of the same size in attn and the gradients.
    def close(u, v, what):
        torch.testing.assert_close(u, v, rtol=1e-9, atol=1e-9 * (1.0 + v.abs().max().item()), msg=what)

    assert torch.isfinite(p).all() and torch.isfinite(a).all()
    close(p, rp, "pooled")
    close(a, ra, "attn")
    names = ["face", "context", "w1", "b1", "w2", "b2", "hidden_scale", "hidden_shift"]
    for name, u, v in zip(names, g, rg):
        assert torch.isfinite(u).all(), name
        close(u, v, f"grad {name}")


@pytest.mark.parametrize("fn", [cpp_recomputed, cpp_saved], ids=["recompute", "saved"])
@pytest.mark.parametrize("case", list(GRID))
def test_forward_and_grads_match_reference_float64(case, fn, two_threads):
    _assert_matches_reference_f64(make_gla_inputs(dtype=torch.float64, **GRID[case]), fn)


@pytest.mark.parametrize("kind", ["gaps", "cl_gaps", "strided"])
@pytest.mark.parametrize("folded_bn", [False, True])
def test_sliced_context_read_in_place(kind, folded_bn, two_threads):
    x = _sliced(make_gla_inputs(B=2, Df=5, Dc=7, H=3, W=5, Hd=4, folded_bn=folded_bn), kind)
    _assert_matches_reference_f64(x, cpp_recomputed)
    _assert_matches_reference_f64(x, cpp_saved)


@pytest.mark.parametrize("kind", ["gaps", "cl_gaps", "strided"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16bit_context_any_strides_same_as_contiguous(kind, dtype, two_threads):
    """A 16-bit context is converted tile by tile from whatever strides it has: a non-contiguous
    view gives bit for bit what its contiguous copy gives (B=7, 7x7: batched tiles too)."""
    x = _sliced(make_gla_inputs(B=7, Df=8, Dc=16, H=7, W=7, Hd=16, folded_bn=True), kind)
    x = [None if t is None else t.to(dtype) for t in x]
    gp, ga = torch.randn(7, 16).to(dtype), torch.randn(7, 7, 7).to(dtype)
    got = _run(cpp, x, gp, ga)
    want = _run(cpp, [x[0], x[1].contiguous(), *x[2:]], gp, ga)
    for u, v in zip([got[0], got[1], *got[2]], [want[0], want[1], *want[2]]):
        assert u.dtype == dtype and torch.equal(u, v)


def test_grad_into_attn_only_and_pooled_only():
    x = make_gla_inputs(B=2, Df=5, Dc=7, H=3, W=4, Hd=3, folded_bn=True)
    for use_p, use_a in ((False, True), (True, False)):
        outs = []
        for fn in (cpp, gla_reference):
            xs = [None if t is None else t.clone().requires_grad_(True) for t in x]
            p, a = fn(*xs)
            loss = (p.square().sum() if use_p else 0) + ((a * torch.arange(a.numel()).view_as(a)).sum() if use_a else 0)
            outs.append(torch.autograd.grad(loss, _params(xs)))
        for u, v in zip(*outs):
            torch.testing.assert_close(u, v, rtol=1e-9, atol=1e-12)


def test_scores_1e3_float32_no_nan_and_close():
    """float32 with scores ~1e3: finite, sums to 1, and within 2x PyTorch's float32 error
    (a score error of ~1e3 * 1e-7 moves attn by ~1e-4 relative in both)."""
    x64 = make_gla_inputs(B=2, Df=5, Dc=7, H=6, W=6, Hd=4, score_scale=1e3)
    x32 = [None if t is None else t.float() for t in x64]
    p, a = cpp(*x32)
    assert torch.isfinite(p).all() and torch.isfinite(a).all()
    torch.testing.assert_close(a.sum(dim=(1, 2)), torch.ones(2), rtol=0, atol=1e-5)
    rp64, ra64 = gla_reference(*x64)
    rp32, ra32 = gla_reference(*x32)
    for k, r, ref in ((p, rp32, rp64), (a, ra32, ra64)):
        assert _max_err(k, ref) <= 2 * _max_err(r, ref) + 1e-6 * (1 + ref.abs().max().item())


def _max_err(u, v):
    return (u.double() - v.double()).abs().max().item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_low_precision_within_twice_pytorch_error(dtype, channels_last, two_threads):
    """Error vs the float64 reference is at most 2x that of gla_reference run in `dtype`
    (the same computation in PyTorch) plus a small atol: eps(dtype) times the output scale,
    which covers the final rounding of an output to `dtype`."""
    x64 = make_gla_inputs(B=3, Df=16, Dc=24, H=5, W=7, Hd=8, folded_bn=True, channels_last=channels_last)
    xl = [None if t is None else t.to(dtype) for t in x64]
    p64, a64, g64, gp, ga = _run(gla_reference, x64)
    pk, ak, gk, _, _ = _run(cpp, xl, gp.to(dtype), ga.to(dtype))
    pr, ar, gr, _, _ = _run(gla_reference, xl, gp.to(dtype), ga.to(dtype))
    eps = torch.finfo(dtype).eps
    assert pk.dtype == dtype and ak.dtype == dtype and all(g.dtype == dtype for g in gk)
    for name, k, r, ref in [("pooled", pk, pr, p64), ("attn", ak, ar, a64)] + [
        (f"grad{i}", k, r, ref) for i, (k, r, ref) in enumerate(zip(gk, gr, g64))
    ]:
        atol = eps * (1.0 + ref.abs().max().item())
        assert _max_err(k, ref) <= 2 * _max_err(r, ref) + atol, (name, _max_err(k, ref), _max_err(r, ref))


def test_gradcheck_float64():
    for kw in (dict(), dict(folded_bn=True, channels_last=True)):
        x = make_gla_inputs(B=2, Df=3, Dc=4, H=2, W=3, Hd=3, requires_grad=True, **kw)
        assert torch.autograd.gradcheck(lambda *t: cpp(*t), tuple(x), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_opcheck():
    for kw in (dict(), dict(folded_bn=True), dict(channels_last=True, dtype=torch.float32)):
        x = make_gla_inputs(B=2, Df=3, Dc=4, H=2, W=3, Hd=3, requires_grad=True, **kw)
        torch.library.opcheck(torch.ops.glamor_fast.gla_forward.default, tuple(x))
        torch.library.opcheck(torch.ops.glamor_fast.gla_forward.default, (*x, True))
    x = make_gla_inputs(B=2, Df=3, Dc=4, H=2, W=3, Hd=3, folded_bn=True)
    p, a, lse, hidden = torch.ops.glamor_fast.gla_forward(*x, True)
    assert hidden.shape == (2, 6, 3)
    for needs in ([True] * 8, [False, True, False, True, True, False, False, True]):
        for h in (None, hidden):
            args = (torch.randn_like(p), torch.randn_like(a), torch.randn_like(lse), *x, p, a, lse, h, needs)
            torch.library.opcheck(torch.ops.glamor_fast.gla_backward.default, args)


def test_grad_lse_matches_autograd_of_logsumexp():
    """The op's third output lse is differentiable too (d lse / d s = attn)."""
    x = make_gla_inputs(B=2, Df=3, Dc=4, H=2, W=3, Hd=3, requires_grad=True, folded_bn=True)
    _, _, lse, _ = torch.ops.glamor_fast.gla_forward(*x)
    g = torch.autograd.grad(lse.sum(), _params(x))
    cells = x[1].flatten(2).transpose(1, 2)
    joined = torch.cat([x[0].unsqueeze(1).expand(-1, cells.shape[1], -1), cells], -1)
    h = torch.relu(torch.relu(joined @ x[2].t() + x[3]) * x[6] + x[7])
    ref = torch.logsumexp(h @ x[4] + x[5], dim=1)
    torch.testing.assert_close(lse, ref.detach())
    for u, v in zip(g, torch.autograd.grad(ref.sum(), _params(x))):
        torch.testing.assert_close(u, v, rtol=1e-9, atol=1e-12)


def test_needs_grad_skips_work_and_returns_none():
    x = make_gla_inputs(B=2, Df=3, Dc=4, H=2, W=3, Hd=3)
    x[2].requires_grad_(True)  # only w1
    p, a = cpp(*x)
    (g,) = torch.autograd.grad(p.sum() + a.square().sum(), [x[2]])
    x2 = [None if t is None else t.detach().requires_grad_(True) for t in x]
    rp, ra = gla_reference(*x2)
    torch.testing.assert_close(g, torch.autograd.grad(rp.sum() + ra.square().sum(), [x2[2]])[0])
    assert x[1].grad is None


@pytest.mark.parametrize("shape", [dict(B=1, H=10, W=20), dict(B=5, H=6, W=7)])
def test_deterministic_two_runs_bitwise(shape, two_threads):
    x = make_gla_inputs(Df=6, Dc=9, Hd=5, dtype=torch.float32, folded_bn=True, **shape)
    first = _run(cpp, x)
    second = _run(cpp, x, first[3], first[4])
    for u, v in zip(first[:2] + tuple(first[2]), second[:2] + tuple(second[2])):
        assert torch.equal(u, v)


def test_one_and_two_threads_agree():
    x = make_gla_inputs(B=1, Df=6, Dc=9, H=10, W=20, Hd=5, folded_bn=True)  # B < threads: split cells
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _run(cpp, x)
        torch.set_num_threads(2)
        two = _run(cpp, x, one[3], one[4])
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


def test_auto_picks_cpp_on_cpu():
    from glamor_fast.ops import registry

    assert registry.choose_backend("auto", torch.device("cpu"), torch.float32) == "cpp"


@pytest.mark.parametrize("compile_backend", ["aot_eager", "inductor"])
def test_torch_compile_fullgraph_no_graph_break(compile_backend):
    torch._dynamo.reset()
    x = make_gla_inputs(B=2, Df=5, Dc=7, H=3, W=4, Hd=3, dtype=torch.float32, folded_bn=True, requires_grad=True)

    def f(*t):
        p, a = gla(*t, backend="cpp")
        return p.square().sum() + (a * a).sum()

    compiled = torch.compile(f, fullgraph=True, backend=compile_backend)
    out = compiled(*x)
    g = torch.autograd.grad(out, _params(x))
    ref = f(*x)
    torch.testing.assert_close(out, ref)
    for u, v in zip(g, torch.autograd.grad(ref, _params(x))):
        torch.testing.assert_close(u, v)


def test_glamornet_cpp_matches_reference():
    from glamor_fast.models import GLAMORNet

    torch.manual_seed(0)
    for norm in (None, "batchnorm"):
        ref = GLAMORNet(encoder="conv5", attention="gla", gla_norm=norm, backend="reference").double()
        fast = GLAMORNet(encoder="conv5", attention="gla", gla_norm=norm, backend="cpp").double()
        fast.load_state_dict(ref.state_dict())
        face = torch.randn(2, 3, 96, 96, dtype=torch.float64)
        context = torch.randn(2, 3, 112, 112, dtype=torch.float64)
        for model in (ref, fast):
            model.train()
            torch.manual_seed(1)  # same dropout masks
            model.zero_grad()
            model._logits = model(face, context)
            model._logits.square().sum().backward()
        torch.testing.assert_close(fast._logits, ref._logits, rtol=1e-9, atol=1e-10)
        for (name, pf), (_, pr) in zip(fast.named_parameters(), ref.named_parameters()):
            if pr.grad is None:
                assert pf.grad is None, name
                continue
            torch.testing.assert_close(pf.grad, pr.grad, rtol=1e-8, atol=1e-10, msg=name)


@pytest.mark.parametrize("mode", ["pack", "aten"])
def test_other_gemm_paths_match_too(mode):
    """GLAMOR_FAST_GEMM=pack (MKL packed W1c, float32) and =aten (at::mm on views) are read once
    per process, so the float32 tests run again in a subprocess with each."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, GLAMOR_FAST_GEMM=mode)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__)),
         "-k", "low_precision or scores_1e3_float32 or one_and_two_threads or glamornet"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "deselected" in out.stdout


@pytest.mark.parametrize("kw", [dict(), dict(folded_bn=True, channels_last=True)])
def test_double_backward_gradgradcheck_float64(kw):
    """create_graph=True through the op gives the true second-order gradients."""
    x = make_gla_inputs(B=2, Df=3, Dc=4, H=2, W=2, Hd=3, requires_grad=True, **kw)
    assert torch.autograd.gradgradcheck(lambda *t: cpp(*t), tuple(_params(x)),
                                        eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradient_penalty_matches_reference():
    """A gradient penalty (|d loss / d context|^2 backpropagated into the weights) as the
    reference computes it, lse's cotangent included."""
    x = make_gla_inputs(B=2, Df=3, Dc=4, H=2, W=3, Hd=3, folded_bn=True)
    out = []
    for fn in (cpp, gla_reference):
        xs = [t.clone().requires_grad_(True) for t in x]
        p, a = fn(*xs)
        (gc,) = torch.autograd.grad(p.square().sum() + a.sin().sum(), [xs[1]], create_graph=True)
        out.append(torch.autograd.grad(gc.square().sum(), xs))
    for u, v in zip(*out):
        torch.testing.assert_close(u, v, rtol=1e-9, atol=1e-12)
    xs = [t.clone().requires_grad_(True) for t in x]
    lse = torch.ops.glamor_fast.gla_forward(*xs)[2]
    (gf,) = torch.autograd.grad(lse.sum(), [xs[0]], create_graph=True)
    cells = xs[1].flatten(2).transpose(1, 2)
    joined = torch.cat([xs[0].unsqueeze(1).expand(-1, cells.shape[1], -1), cells], -1)
    h = torch.relu(torch.relu(joined @ xs[2].t() + xs[3]) * xs[6] + xs[7])
    (rf,) = torch.autograd.grad(torch.logsumexp(h @ xs[4] + xs[5], dim=1).sum(), [xs[0]], create_graph=True)
    for u, v in zip(torch.autograd.grad(gf.sum(), xs[2]), torch.autograd.grad(rf.sum(), xs[2])):
        torch.testing.assert_close(u, v, rtol=1e-9, atol=1e-12)


def assert_exact_zero_grads(a, ra, g, rg):
    """attn one-hot on both sides; the face, w1, b1 and w2 gradients exactly 0 as PyTorch's."""
    assert ((a == 0) | (a == 1)).all() and (ra == a).all(), "the case must be exactly one-hot"
    for i, what in ((0, "face"), (2, "w1"), (3, "b1"), (4, "w2")):
        assert (rg[i] == 0).all(), f"PyTorch's {what} gradient is exactly 0 here"
        assert (g[i] == 0).all(), f"grad {what}: max |g| = {g[i].abs().max().item():.3g}, not exactly 0"


def _exact_zero_cases():
    """(name, inputs) where the true gradients of face, w1, b1 and w2 are 0: one cell, and a
    softmax made one-hot by large scores (the winning cell's score ~1e4 above the rest)."""
    n1 = make_gla_inputs(B=3, Df=5, Dc=7, H=1, W=1, Hd=4, dtype=torch.float32)
    n1[2] = n1[2] * 30  # large weights amplified the old rounding noise
    hot = make_gla_inputs(B=2, Df=5, Dc=7, H=4, W=6, Hd=4, dtype=torch.float32)
    hot[1][:, :, 1, 2] += 40.0  # one cell far out: its hidden units dominate the score
    hot[4] = hot[4].abs() * 1e3
    big = make_gla_inputs(B=2, Df=5, Dc=7, H=20, W=20, Hd=4, dtype=torch.float32)  # cells span tiles
    big[1][:, :, 13, 17] += 40.0
    big[4] = big[4].abs() * 1e5  # gaps beyond float64's exp underflow too
    return {"n1": n1, "one_hot": hot, "one_hot_multi_tile": big}


@pytest.mark.parametrize("fn", [cpp_recomputed, cpp_saved], ids=["recompute", "saved"])
@pytest.mark.parametrize("name", ["n1", "one_hot", "one_hot_multi_tile"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_exact_zero_gradients_stay_exactly_zero(name, dtype, fn, two_threads):
    """float32/float64 and 16-bit inputs alike (16-bit: ds from a recomputed in float32, delta
    from the rounded attn, which is exactly 0 / 1 here)."""
    if dtype == torch.float16 and name == "one_hot_multi_tile":
        pytest.skip("its scores (w2 ~ 1e5) overflow float16")
    x = [None if t is None else t.to(dtype) for t in _exact_zero_cases()[name]]
    p, a, g, gp, ga = _run(fn, x)
    rp, ra, rg, _, _ = _run(gla_reference, x, gp, ga)
    assert_exact_zero_grads(a, ra, g, rg)
    torch.testing.assert_close(g[1], rg[1])  # dcontext = a gp: exact too, up to rounding


def test_hidden_saved_only_when_a_backward_follows():
    from glamor_fast.ops.gla.contract import save_hidden

    cpp = (True, "cpp")
    x = make_gla_inputs(B=2, Df=3, Dc=4, H=2, W=3, Hd=3, requires_grad=True)
    assert save_hidden(None, *cpp, *x[:6])
    assert not save_hidden(True, *cpp, *x[:6])
    with torch.no_grad():
        assert not save_hidden(None, *cpp, *x[:6])
    big = make_gla_inputs(B=1, Df=3, Dc=4, H=1, W=1, Hd=3, requires_grad=True)
    big[1] = torch.empty(64, 4, 256, 256, dtype=torch.float64, requires_grad=True)  # 4 GB hidden
    big[2] = torch.empty(4096, 3 + 4, dtype=torch.float64)
    assert not save_hidden(None, *cpp, *big[:6]) and save_hidden(False, *cpp, *big[:6])
    assert not save_hidden(None, False, "cuda", *x[:6])  # the GPU kernels always recompute
    with pytest.raises(ValueError, match="recompute=False .* cpp backend only"):
        save_hidden(False, False, "cuda", *x[:6])


@pytest.mark.parametrize("fn", [cpp_recomputed, cpp_saved], ids=["recompute", "saved"])
@pytest.mark.parametrize("shape", [dict(B=6, H=7, W=7), dict(B=1, H=28, W=28)], ids=["paper7x7", "hires28"])
def test_paper_full_sizes_float32_within_twice_pytorch_error(shape, fn, two_threads):
    """Df = Dc = 256, Hd = 128 (the paper's sizes; B kept small): float32 cpp and float32
    PyTorch against the float64 reference, forward and every gradient."""
    x64 = make_gla_inputs(Df=256, Dc=256, Hd=128, folded_bn=True, **shape)
    x32 = [t.float() for t in x64]
    p64, a64, g64, gp, ga = _run(gla_reference, x64)
    pk, ak, gk, _, _ = _run(fn, x32, gp.float(), ga.float())
    pr, ar, gr, _, _ = _run(gla_reference, x32, gp.float(), ga.float())
    eps = torch.finfo(torch.float32).eps
    for name, k, r, ref in [("pooled", pk, pr, p64), ("attn", ak, ar, a64)] + [
        (f"grad{i}", k, r, ref) for i, (k, r, ref) in enumerate(zip(gk, gr, g64))
    ]:
        atol = eps * (1.0 + ref.abs().max().item())
        assert _max_err(k, ref) <= 2 * _max_err(r, ref) + atol, (name, _max_err(k, ref), _max_err(r, ref))


def _nonfinite_cases():
    x = make_gla_inputs(B=3, Df=5, Dc=7, H=4, W=5, Hd=4, dtype=torch.float32, folded_bn=True)
    nan_cell = [t.clone() for t in x]
    nan_cell[1][1, 2, 3, 1] = float("nan")  # one cell of batch element 1
    inf_cell = [t.clone() for t in x]
    inf_cell[1][0, 4, 0, 0] = float("inf")
    inf_face = [t.clone() for t in x]
    inf_face[0][2, 1] = -float("inf")
    all_neg_inf = [t.clone() for t in x]
    all_neg_inf[5] = torch.tensor(-float("inf"))  # b2 = -inf: every score -inf
    return {"nan_cell": nan_cell, "inf_cell": inf_cell, "inf_face": inf_face, "all_scores_neg_inf": all_neg_inf}


@pytest.mark.parametrize("fn", [cpp_recomputed, cpp_saved], ids=["recompute", "saved"])
@pytest.mark.parametrize("name", list(_nonfinite_cases()))
def test_nan_and_inf_propagate_like_pytorch(name, fn, two_threads):
    """Non-finite inputs: no crash, the same non-finite outputs and gradients as PyTorch's,
    and the untouched batch elements' outputs unchanged."""
    x = _nonfinite_cases()[name]
    gp = torch.randn(3, 7)
    ga = torch.randn(3, 4, 5)
    p, a, g, _, _ = _run(fn, x, gp, ga)
    rp, ra, rg, _, _ = _run(gla_reference, x, gp, ga)
    for what, u, v in [("pooled", p, rp), ("attn", a, ra)] + [(f"grad{i}", u, v) for i, (u, v) in enumerate(zip(g, rg))]:
        assert torch.equal(torch.isfinite(u), torch.isfinite(v)), what
        fin = torch.isfinite(v)
        torch.testing.assert_close(u[fin], v[fin], rtol=1e-4, atol=1e-5, msg=what)
