"""The GLA op's one contract (glamor_fast.ops.gla.contract): the fused backends' shared schemas,
and when the forward saves the hidden layer for the backward."""
from __future__ import annotations

import pytest
import torch

from glamor_fast.ops import extension
from glamor_fast.ops.gla import gla
from glamor_fast.ops.gla.contract import save_hidden
from glamor_fast.ops.registry import unavailable_reason
from tests.helpers import make_gla_inputs


def test_triton_ops_have_the_compiled_ops_schema():
    """One contract: the Triton ops take and return exactly what glamor_fast::gla_forward /
    gla_backward (csrc) do, argument by argument and output by output."""
    pytest.importorskip("glamor_fast.ops.gla.triton")
    if extension.load_error() is not None:
        pytest.fail(extension.load_error())
    for compiled, fused in (("gla_forward", "gla_forward_triton"), ("gla_backward", "gla_backward_triton")):
        a = getattr(torch.ops.glamor_fast, compiled).default._schema
        b = getattr(torch.ops.glamor_fast, fused).default._schema
        assert str(a).split("(", 1)[1] == str(b).split("(", 1)[1], (a, b)


def test_hidden_saved_only_when_a_backward_follows():
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


def test_recompute_policy_is_passed_through_and_refused_where_unsupported(monkeypatch):
    from glamor_fast.models import GlobalLocalAttention
    from glamor_fast.ops.gla import contract

    seen = []
    real = contract.apply

    def spy(forward_name, backward_name, save, *args):
        seen.append(save)
        return real(forward_name, backward_name, save, *args)

    monkeypatch.setattr(contract, "apply", spy)
    mod = GlobalLocalAttention(8, 6, 5, backend="cpp", recompute=False).double()
    face, ctx = torch.randn(2, 8, dtype=torch.float64), torch.randn(2, 6, 3, 4, dtype=torch.float64)
    with torch.no_grad():
        mod(face, ctx)
    mod.recompute = None
    mod(face, ctx)  # grad mode on, parameters require grad: small, so saved
    mod.recompute = True
    mod(face, ctx)
    assert seen == [True, True, False]
    if unavailable_reason("triton", torch.device("cpu"), torch.float32) is None:
        x = make_gla_inputs(dtype=torch.float32)
        with pytest.raises(ValueError, match="recompute=False .* cpp backend only"):
            gla(*x, backend="triton", recompute=False)
