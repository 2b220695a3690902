"""The reference GLA: the spec itself, checked against hand computation and its invariants."""
import math

import pytest
import torch

from glamor_fast import gla_reference
from tests.helpers import make_gla_inputs


def test_hand_computed_tiny_case():
    # Df = Dc = Hd = 1, two cells: z = f + v, s = relu(z), softmax, pooled = sum a v.
    face = torch.tensor([[1.0]], dtype=torch.float64)
    context = torch.tensor([2.0, -1.0], dtype=torch.float64).view(1, 1, 1, 2)
    w1 = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    b1 = torch.zeros(1, dtype=torch.float64)
    w2 = torch.ones(1, dtype=torch.float64)
    b2 = torch.tensor(0.5, dtype=torch.float64)
    pooled, attn = gla_reference(face, context, w1, b1, w2, b2)
    a1 = math.exp(3.0) / (math.exp(3.0) + math.exp(0.0))  # scores 3.5 and 0.5: b2 cancels
    assert attn.shape == (1, 1, 2)
    assert attn[0, 0, 0].item() == pytest.approx(a1, rel=1e-12)
    assert attn[0, 0, 1].item() == pytest.approx(1 - a1, rel=1e-12)
    assert pooled.item() == pytest.approx(2 * a1 - (1 - a1), rel=1e-12)


def test_hand_computed_folded_norm():
    face = torch.tensor([[1.0]], dtype=torch.float64)
    context = torch.tensor([2.0, -1.0], dtype=torch.float64).view(1, 1, 1, 2)
    w1 = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    b1, w2, b2 = torch.zeros(1).double(), torch.ones(1).double(), torch.tensor(0.0).double()
    scale, shift = torch.tensor([2.0]).double(), torch.tensor([-1.0]).double()
    _, attn = gla_reference(face, context, w1, b1, w2, b2, scale, shift)
    # h = relu(2 * relu(z) - 1): z = 3 -> 5, z = 0 -> 0
    assert attn[0, 0, 0].item() == pytest.approx(math.exp(5) / (math.exp(5) + 1), rel=1e-12)


@pytest.mark.parametrize("folded_bn", [False, True])
def test_attention_sums_to_one_and_pooled_is_weighted_mean(folded_bn):
    inputs = make_gla_inputs(B=3, H=5, W=3, folded_bn=folded_bn)
    pooled, attn = gla_reference(*inputs)
    torch.testing.assert_close(attn.sum(dim=(1, 2)), torch.ones(3, dtype=torch.float64))
    assert (attn >= 0).all()
    context = inputs[1]
    expected = (attn.unsqueeze(1) * context).sum(dim=(2, 3))
    torch.testing.assert_close(pooled, expected)


def test_permuting_cells_permutes_attention_and_keeps_pooled():
    face, context, *params = make_gla_inputs(B=2, H=3, W=4)
    perm = torch.randperm(12)
    shuffled = context.flatten(2)[:, :, perm].view_as(context)
    pooled, attn = gla_reference(face, context, *params)
    pooled_p, attn_p = gla_reference(face, shuffled, *params)
    torch.testing.assert_close(pooled_p, pooled)
    torch.testing.assert_close(attn_p.flatten(1), attn.flatten(1)[:, perm])


def test_large_scores_do_not_overflow():
    inputs = make_gla_inputs(B=2, H=7, W=7, score_scale=1e3, dtype=torch.float32)
    pooled, attn = gla_reference(*inputs)
    assert torch.isfinite(pooled).all() and torch.isfinite(attn).all()


@pytest.mark.parametrize("folded_bn", [False, True])
def test_gradcheck_every_input(folded_bn):
    inputs = make_gla_inputs(B=2, Df=3, Dc=4, H=2, W=3, Hd=5, folded_bn=folded_bn, requires_grad=True)
    args = [t for t in inputs if t is not None]

    def fn(*xs):
        pooled, attn = gla_reference(*xs)
        return pooled, attn

    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-7)


# Loose bounds: the reference itself runs in the input dtype (bf16 has an 8-bit mantissa,
# ~4e-3 relative per rounding; a few roundings through two matmuls and a softmax).
LOW_PRECISION_TOL = {torch.float32: 1e-5, torch.float16: 2e-2, torch.bfloat16: 1e-1}


@pytest.mark.parametrize("dtype", list(LOW_PRECISION_TOL))
def test_low_precision_dtypes_follow_float64(dtype):
    exact_inputs = make_gla_inputs(B=2, H=3, W=3, folded_bn=True)
    pooled, attn = gla_reference(*[None if t is None else t.to(dtype) for t in exact_inputs])
    assert pooled.dtype == dtype and attn.dtype == dtype
    exact_pooled, exact_attn = gla_reference(*exact_inputs)
    tol = LOW_PRECISION_TOL[dtype]
    torch.testing.assert_close(pooled.double(), exact_pooled, atol=tol, rtol=tol)
    torch.testing.assert_close(attn.double(), exact_attn, atol=tol, rtol=tol)


@pytest.mark.parametrize("kw", [dict(), dict(folded_bn=True, channels_last=True), dict(B=1, H=1, W=1)])
def test_split_formulation_equals_reference(kw):
    """gla_split (the benchmarks' best plain-PyTorch baseline) computes the same function and
    gradients as the literal reference, in float64 to summation-order rounding."""
    from glamor_fast.ops import gla_split

    x = make_gla_inputs(**kw)
    xs = [None if t is None else t.clone().requires_grad_(True) for t in x]
    xr = [None if t is None else t.clone().requires_grad_(True) for t in x]
    ps, as_ = gla_split(*xs)
    pr, ar = gla_reference(*xr)
    torch.testing.assert_close(ps, pr, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(as_, ar, rtol=1e-12, atol=1e-12)
    gp, ga = torch.randn_like(pr), torch.randn_like(ar)
    gs = torch.autograd.grad((ps, as_), [t for t in xs if t is not None], (gp, ga))
    gr = torch.autograd.grad((pr, ar), [t for t in xr if t is not None], (gp, ga))
    for u, v in zip(gs, gr):
        torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-12)
