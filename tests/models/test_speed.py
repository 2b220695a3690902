"""Inference speed settings keep the model's function."""
import pytest
import torch
from torch import nn

from glamor_fast import build_model, fold_batchnorm, optimize_for_inference


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
