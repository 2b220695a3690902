"""The hidden layer's batch statistics in tiles (glamor_fast.ops.gla.hidden_stats) against the plain
torch formula over the materialised (B, N, Hd) layer, and GlobalLocalAttention(norm="batchnorm")
on a fused backend against the reference backend."""
from __future__ import annotations

import pytest
import torch

import glamor_fast.ops.gla.hidden_stats as hs
from glamor_fast.models.attention import GlobalLocalAttention
from glamor_fast.ops.gla.hidden_stats import gla_hidden_stats
from tests.helpers import cpu_peak_bytes


def _inputs(B, Df, Dc, H, W, Hd, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = [torch.randn(B, Df, generator=g, dtype=torch.float64), torch.randn(B, Dc, H, W, generator=g, dtype=torch.float64),
         torch.randn(Hd, Df + Dc, generator=g, dtype=torch.float64) / (Df + Dc) ** 0.5,
         torch.randn(Hd, generator=g, dtype=torch.float64)]
    return [x.to(dtype).requires_grad_(True) for x in t]


def _plain(face, context, w1, b1):
    Df = face.shape[1]
    cells = context.flatten(2).transpose(1, 2)
    h = torch.relu(cells @ w1[:, Df:].t() + (face @ w1[:, :Df].t() + b1).unsqueeze(1)).flatten(0, 1)
    return h.mean(0), h.var(0, unbiased=False)


@pytest.fixture
def small_tiles(monkeypatch):
    monkeypatch.setattr(hs, "TILE_CELLS", 16)  # several tiles even at test sizes


@pytest.fixture(params=["compiled", "torch"])
def impl(request, monkeypatch):
    """Both implementations: glamor_fast._C's CPU kernels, and the tiled torch loop (CUDA's)."""
    if request.param == "compiled":
        assert hs._compiled(torch.empty(1, 1, 1, 1)), "glamor_fast._C has no hidden-stats kernels: rebuild it"
    else:
        monkeypatch.setattr(hs, "_compiled", lambda context: False)
    return request.param


# (B, Df, Dc, H, W, Hd): several tiles; one cell; 7x7 batched into shared tiles (B=7: a group's
# last element alone); B=1 with cells split across chunks / threads
SHAPES = [(3, 5, 7, 4, 5, 6), (1, 3, 4, 1, 1, 5), (2, 4, 4, 5, 7, 9), (7, 5, 16, 7, 7, 8), (1, 4, 6, 19, 23, 5)]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_plain_torch_and_gradcheck(small_tiles, impl, shape, channels_last, two_threads):
    x = _inputs(*shape)
    if channels_last:
        x[1] = x[1].detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    for got, want in zip(gla_hidden_stats(*x), _plain(*x)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    big = x[1].numel() > 500  # the full Jacobian of every context element would take minutes
    assert torch.autograd.gradcheck(gla_hidden_stats, tuple(x), fast_mode=big)
    if not big:
        assert torch.autograd.gradgradcheck(gla_hidden_stats, tuple(x))


def test_float32_and_opcheck(small_tiles, impl):
    x64 = _inputs(4, 6, 8, 5, 5, 12)
    x32 = [t.detach().float().requires_grad_(True) for t in x64]
    want = _plain(*x64)
    got = gla_hidden_stats(*x32)
    for g, w in zip(got, want):  # float32 products, float64 sums: within a few float32 ulps
        torch.testing.assert_close(g.double(), w, rtol=1e-5, atol=1e-6)
    torch.library.opcheck(torch.ops.glamor_fast.gla_hidden_stats.default, tuple(x32))


def test_nan_propagates_like_plain_torch(impl):
    x = [t.detach() for t in _inputs(2, 4, 6, 3, 4, 5)]
    x[1][1, 2, 0, 3] = float("nan")
    for got, want in zip(gla_hidden_stats(*x), _plain(*x)):
        assert torch.equal(torch.isnan(got), torch.isnan(want))


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_batchnorm_gla_matches_reference_backend(small_tiles, backend):
    """A training step of the module: outputs, every gradient and the running statistics."""
    torch.manual_seed(0)
    ref = GlobalLocalAttention(6, 8, 10, norm="batchnorm", backend="reference").double().train()
    fused = GlobalLocalAttention(6, 8, 10, norm="batchnorm", backend=backend, recompute=True).double().train()
    if backend == "triton":  # no float64 Triton kernels: compare in float32
        ref, fused = ref.float(), fused.float()
    fused.load_state_dict(ref.state_dict())
    dtype = next(ref.parameters()).dtype
    face, context = torch.randn(3, 6, dtype=dtype), torch.randn(3, 8, 4, 5, dtype=dtype)
    outs = []
    for m in (ref, fused):
        pooled, attn = m(face, context)
        (pooled.square().sum() + (attn * torch.arange(20, dtype=dtype).view(4, 5)).sum()).backward()
        outs.append([pooled, attn] + [p.grad for p in m.parameters()] + list(m.buffers()))
    tol = dict(rtol=1e-9, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    for a, b in zip(*outs):
        torch.testing.assert_close(b, a, **tol)


def test_training_step_allocates_no_full_hidden_layer():
    """GlobalLocalAttention(norm="batchnorm", backend="cpp", recompute=True): the peak extra CPU
    memory of forward + backward stays below one float32 (B, N, Hd) tensor; the reference
    backend (which materialises it) exceeds it, so the measurement can tell them apart."""
    B, Df, Dc, H, W, Hd = 8, 16, 16, 28, 28, 256
    full = B * H * W * Hd * 4
    torch.manual_seed(0)
    face, context = torch.randn(B, Df), torch.randn(B, Dc, H, W)
    peaks = {}
    for backend in ("reference", "cpp"):
        m = GlobalLocalAttention(Df, Dc, Hd, norm="batchnorm", backend=backend, recompute=True).train()

        def step():
            pooled, attn = m(face, context)
            (pooled.sum() + attn.square().sum()).backward()

        step()  # warm-up
        peaks[backend] = cpu_peak_bytes(step)
    assert peaks["reference"] > full, peaks
    assert peaks["cpp"] < full, peaks
