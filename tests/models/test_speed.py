"""Inference speed settings keep the model's function."""
import pytest
import torch
from torch import nn

from glamor_fast import build_model, fold_batchnorm, optimize_for_inference
from glamor_fast.models.encoders import Conv5Encoder
from glamor_fast.models.speed import fuse_relu_pool
from glamor_fast.ops.relu_pool import ReLUMaxPool2d
from glamor_fast.ops.stem_conv import Conv3x3ReLUPool2d


def _trained_like(name):
    torch.manual_seed(0)
    model = build_model(name, backend="reference")
    for m in model.modules():  # non-trivial running statistics, as after training
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("name", ["glamor-net", "caernet-s", "glamor-net-resnet18"])
def test_folding_keeps_logits_and_removes_batchnorm2d(name):
    model = _trained_like(name)
    face, context = torch.rand(2, 3, 96, 96), torch.rand(2, 3, 112, 112)
    folded, n = fold_batchnorm(model)
    assert n > 0 and not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    fast = optimize_for_inference(model)
    with torch.no_grad():
        want = model(face, context)
        torch.testing.assert_close(folded(face, context), want, rtol=1e-4, atol=1e-5)
        cl = dict(memory_format=torch.channels_last)
        torch.testing.assert_close(fast(face.contiguous(**cl), context.contiguous(**cl)), want, rtol=1e-4, atol=1e-5)


def test_folding_refuses_training_mode():
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(build_model("glamor-net").train())


@pytest.mark.parametrize("fused_blocks", [True, False])
def test_every_encoder_pool_runs_as_one_relu_pool(fused_blocks):
    """Both encoder layouts end with one Conv3x3ReLUPool2d (the first layer) and three
    ReLUMaxPool2d after optimize_for_inference, and the 5-layer encoder's output is unchanged
    (max and ReLU are exact: only the fold and the first layer's summation order round)."""
    torch.manual_seed(0)
    enc = Conv5Encoder(fused_blocks=fused_blocks)
    enc(torch.randn(4, 3, 32, 32))  # training step: move the running statistics
    enc.eval()
    fast = optimize_for_inference(enc)
    assert sum(isinstance(m, ReLUMaxPool2d) for m in fast.modules()) == 3
    assert sum(isinstance(m, Conv3x3ReLUPool2d) for m in fast.modules()) == 1
    assert not any(isinstance(m, nn.MaxPool2d) for m in fast.modules())
    x = torch.randn(2, 3, 33, 35)
    with torch.no_grad():
        torch.testing.assert_close(fast(x.contiguous(memory_format=torch.channels_last)), enc(x),
                                   rtol=1e-4, atol=1e-5)


def test_fuse_relu_pool_leaves_other_pools():
    seq = nn.Sequential(nn.ReLU(), nn.MaxPool2d(3, 2), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
                        nn.ReLU(), nn.MaxPool2d(2))
    fused, n = fuse_relu_pool(seq)
    assert n == 1 and isinstance(fused[4], ReLUMaxPool2d) and isinstance(fused[5], nn.Identity)
    assert isinstance(seq[4], nn.ReLU)  # the caller's model is untouched
    x = torch.randn(2, 3, 29, 31)
    torch.testing.assert_close(fused(x), seq(x), rtol=0, atol=0)
