"""The one-pass first layer (glamor_fast.ops.stem_conv): conv 3x3 + bias -> ReLU -> MaxPool2d(2)
against the same sequence in float64.

Tolerance: each output is a float32 sum of 9*Cin + 1 products (<= 37); its rounding error is at
most ~37 eps * sum|w x| + eps |b| (sequential sum bound). The bound below is that, computed per
output from the float64 conv of |x| and |w|: it scales with the input, so large magnitudes are
checked at the same relative strictness, and a wrong tap or channel (an O(|w x|) error) fails.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from glamor_fast.ops.stem_conv import Conv3x3ReLUPool2d, conv_fits

EPS = torch.finfo(torch.float32).eps


def _layer(cin, cout, bias=True, seed=0):
    torch.manual_seed(seed)
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=bias)
    return Conv3x3ReLUPool2d.from_conv(conv).eval()


def _check(layer, x):
    with torch.inference_mode():
        assert layer.stem_backend(x) == "cpp"
        y = layer(x)
    w64 = layer.weight.detach().double()
    b64 = None if layer.bias is None else layer.bias.detach().double()
    pre = F.conv2d(x.double(), w64, b64, padding=1)
    want = F.max_pool2d(F.relu(pre), 2)
    mag = F.conv2d(x.double().abs(), w64.abs(), None if b64 is None else b64.abs(), padding=1)
    bound = F.max_pool2d(mag, 2) * (9 * x.shape[1] + 1) * EPS
    assert y.shape == want.shape and y.dtype == torch.float32
    assert y.is_contiguous(memory_format=torch.channels_last)
    nan = torch.isnan(want)
    assert torch.equal(torch.isnan(y), nan)
    inf = torch.isinf(want)
    assert torch.equal(y.double()[inf], want[inf])
    ok = ~nan & ~inf
    err = (y.double() - want).abs()[ok]
    assert (err <= bound[ok]).all(), f"max error {err.max():.3e}, bound there {bound[ok][err.argmax()]:.3e}"
    return y


@pytest.mark.parametrize("cin, cout", [(3, 32), (3, 16), (1, 48), (2, 64), (4, 32)])
@pytest.mark.parametrize("shape", [(2, 9, 11), (1, 2, 2), (3, 16, 17)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_matches_float64(cin, cout, shape, channels_last):
    N, H, W = shape
    x = torch.randn(N, cin, H, W)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    _check(_layer(cin, cout), x)


def test_paper_sizes_and_no_bias():
    _check(_layer(3, 32), torch.rand(4, 3, 112, 112))
    _check(_layer(3, 32, bias=False), torch.rand(2, 3, 96, 96))


def test_large_magnitudes_and_non_contiguous():
    _check(_layer(3, 32), torch.randn(2, 3, 10, 12) * 1e6)
    _check(_layer(3, 32), torch.randn(2, 6, 12, 9)[:, ::2])


def test_nan_inf_and_exact_zeros():
    layer = _layer(3, 32)
    x = torch.rand(2, 3, 10, 10)
    x[0, 1, 4, 4] = float("nan")
    x[1, 0, 2, 7] = float("inf")
    _check(layer, x)
    with torch.no_grad():
        layer.bias.fill_(-100.0)  # every pre-activation negative: ReLU gives exact zeros
    y = _check(layer, torch.rand(1, 3, 8, 8))
    assert (y == 0).all()


def test_gradients_and_other_dtypes_run_the_literal_ops():
    layer = _layer(3, 32).double()
    x = torch.randn(1, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    assert layer.stem_backend(x) == "reference"
    assert torch.autograd.gradcheck(lambda t: layer(t), (x,))
    layer32 = _layer(3, 32)
    x32 = torch.randn(1, 3, 6, 6)
    assert layer32.stem_backend(x32) == "reference"  # parameters require grad, grad mode on
    with torch.no_grad():
        assert layer32.stem_backend(x32) == "cpp"


def test_unbatched_input_like_conv2d():
    layer = _layer(3, 32)
    x = torch.rand(3, 10, 12)
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), _check(layer, x.unsqueeze(0)).squeeze(0), rtol=0, atol=0)


def test_state_dict_is_the_conv_s():
    conv = nn.Conv2d(3, 32, 3, padding=1)
    layer = Conv3x3ReLUPool2d.from_conv(conv)
    assert layer.state_dict().keys() == conv.state_dict().keys()


@pytest.mark.parametrize("conv", [nn.Conv2d(3, 32, 3, padding=1, stride=2), nn.Conv2d(3, 24, 3, padding=1),
                                  nn.Conv2d(8, 32, 3, padding=1), nn.Conv2d(3, 32, 5, padding=2),
                                  nn.Conv2d(3, 32, 3, padding=1, padding_mode="reflect")])
def test_refuses_convs_it_does_not_compute(conv):
    assert not conv_fits(conv)
    with pytest.raises(ValueError, match="Conv3x3ReLUPool2d"):
        Conv3x3ReLUPool2d.from_conv(conv)


def test_opcheck_compile_and_bad_input():
    layer = _layer(3, 32)
    x = torch.randn(2, 3, 8, 10)
    torch.library.opcheck(torch.ops.glamor_fast.stem_conv_relu_pool.default,
                          (x, layer.weight.detach(), layer.bias.detach()))
    torch._dynamo.reset()
    fn = torch.compile(layer, fullgraph=True)
    with torch.inference_mode():
        torch.testing.assert_close(fn(x), layer(x), rtol=0, atol=0)
        with pytest.raises(ValueError, match=r"x must be \(N, 3, H >= 2"):
            layer(torch.randn(2, 3, 1, 5))
