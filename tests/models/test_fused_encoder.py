"""FusedBNReLUPool2d and the fused Conv5Encoder against the literal modules they replace."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from glamor_fast import build_model, optimize_for_inference
from glamor_fast.models.encoders import Conv5Encoder, FusedBNReLUPool2d, set_block_backend

CL = torch.channels_last


@pytest.mark.parametrize("momentum", [0.1, None, 0.3])
@pytest.mark.parametrize("backend", ["cpp", "reference"])
def test_module_matches_bn_relu_pool_over_steps(momentum, backend):
    fused = FusedBNReLUPool2d(6, eps=1e-3, momentum=momentum, backend=backend).double()
    with torch.no_grad():
        fused.weight.uniform_(0.5, 1.5)
        fused.bias.normal_()
    literal = fused.unfused().double()
    for step in range(3):
        x = torch.randn(3, 6, 7, 9, dtype=torch.float64).contiguous(memory_format=CL) * 2 + 1
        outs = []
        for m in (fused, literal):
            xi = x.clone().requires_grad_(True)
            y = m(xi)
            y.backward(torch.ones_like(y) + y)
            outs.append((y, xi.grad))
        torch.testing.assert_close(outs[0], outs[1], rtol=1e-9, atol=1e-9)
    fs, ls = fused.state_dict(), literal[0].state_dict()
    assert list(fs) == list(ls)
    for k in fs:
        torch.testing.assert_close(fs[k], ls[k], rtol=1e-9, atol=1e-12, msg=k)
    torch.testing.assert_close(fused.weight.grad, literal[0].weight.grad, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fused.bias.grad, literal[0].bias.grad, rtol=1e-9, atol=1e-9)
    # eval mode uses the running statistics
    fused.eval(), literal.eval()
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64)
    torch.testing.assert_close(fused(x), literal(x))


def test_encoder_state_dict_keys_unchanged_and_interchangeable():
    fused, plain = Conv5Encoder(), Conv5Encoder(fused_blocks=False)
    assert any(isinstance(m, FusedBNReLUPool2d) for m in fused.modules())
    assert not any(isinstance(m, FusedBNReLUPool2d) for m in plain.modules())
    assert list(fused.state_dict()) == list(plain.state_dict())
    plain.load_state_dict(fused.state_dict())
    fused.load_state_dict(plain.state_dict())


def _step(model, face, ctx, labels):
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(face, ctx), labels)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("channels_last", [True, False])
def test_training_step_same_with_and_without_fusion(channels_last):
    torch.manual_seed(0)
    fused = build_model("glamor-net", backend="reference", dropout=0.0).train()
    plain = copy.deepcopy(fused)
    set_block_backend(plain, "reference")  # the literal batch_norm -> relu -> max_pool2d ops
    assert any(m.backend == "auto" for m in fused.modules() if isinstance(m, FusedBNReLUPool2d))
    face, ctx = torch.randn(2, 3, 96, 96), torch.randn(2, 3, 112, 112)
    if channels_last:
        fused, plain = fused.to(memory_format=CL), plain.to(memory_format=CL)
        face, ctx = face.contiguous(memory_format=CL), ctx.contiguous(memory_format=CL)
    labels = torch.tensor([1, 4])
    (lf, gf), (lp, gp) = _step(fused, face, ctx, labels), _step(plain, face, ctx, labels)
    # float32 through five conv layers: BatchNorm's reductions in another order move values by
    # ~1e-6 relative; gradients pass back through the same layers.
    torch.testing.assert_close(lf, lp, rtol=1e-5, atol=1e-5)
    assert gf.keys() == gp.keys()
    for k in gf:
        torch.testing.assert_close(gf[k], gp[k], rtol=1e-3, atol=1e-4, msg=k)
    for (k, a), (_, b) in zip(fused.state_dict().items(), plain.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)


def test_optimize_for_inference_folds_fused_blocks():
    torch.manual_seed(0)
    model = build_model("glamor-net", backend="reference").train()
    model(torch.randn(4, 3, 96, 96), torch.randn(4, 3, 112, 112))  # move the running statistics
    model.eval()
    fast = optimize_for_inference(model)
    assert not any(isinstance(m, (FusedBNReLUPool2d, nn.BatchNorm2d)) for m in fast.modules())
    face, ctx = torch.randn(2, 3, 96, 96), torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(fast(face.contiguous(memory_format=CL), ctx.contiguous(memory_format=CL)),
                                   model(face, ctx), rtol=1e-4, atol=1e-4)


def test_torch_compile_fullgraph_matches_eager():
    torch._dynamo.reset()
    block = FusedBNReLUPool2d(5)
    twin = copy.deepcopy(block)
    compiled = torch.compile(block, fullgraph=True)
    x = torch.randn(2, 5, 7, 6).contiguous(memory_format=CL)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya, yb = compiled(xa), twin(xb)
    ya.sum().backward(), yb.sum().backward()
    torch.testing.assert_close(ya, yb)
    torch.testing.assert_close(xa.grad, xb.grad)
    for k, v in block.state_dict().items():
        torch.testing.assert_close(v, twin.state_dict()[k], msg=k)
    assert int(block.num_batches_tracked) == 1
