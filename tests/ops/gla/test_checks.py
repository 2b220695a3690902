"""GLA argument validation (glamor_fast.ops.gla.checks): every entry point fails on a bad call
with a one-line message naming the argument, its shape, dtype or device."""
import pytest
import torch

from glamor_fast import gla, gla_reference
from glamor_fast.ops import gla_split
from tests.helpers import GLA_INPUT_NAMES, make_gla_inputs


def _bad(**changes):
    kwargs = dict(zip(GLA_INPUT_NAMES, make_gla_inputs(B=2, Df=6, Dc=5, H=3, W=4, Hd=7, dtype=torch.float32)))
    kwargs.update(changes)
    return kwargs


@pytest.mark.parametrize(
    "changes, error, pattern",
    [
        (dict(face=torch.randn(2, 6, 1)), ValueError, r"`face` must be 2-D"),
        (dict(context=torch.randn(2, 5, 12)), ValueError, r"`context` must be 4-D"),
        (dict(face=torch.randn(3, 6)), ValueError, r"batch sizes differ.*B=3.*B=2"),
        (dict(w1=torch.randn(7, 10)), ValueError, r"`w1` must have shape \(Hd, Df \+ Dc\) = \(Hd, 11\)"),
        (dict(b1=torch.randn(6)), ValueError, r"`b1` must have shape \(Hd,\) = \(7,\)"),
        (dict(w2=torch.randn(1, 7)), ValueError, r"`w2` must have shape"),
        (dict(b2=torch.randn(2)), ValueError, r"`b2` must be a scalar"),
        (dict(hidden_scale=torch.ones(7)), ValueError, r"given together"),
        (dict(hidden_scale=torch.ones(6), hidden_shift=torch.ones(6)), ValueError, r"`hidden_scale` must have shape"),
        (dict(face=torch.randn(2, 6, dtype=torch.float64)), TypeError, r"`face` has dtype torch.float64.*float32"),
        (dict(context=torch.randint(0, 3, (2, 5, 3, 4))), TypeError, r"`context` has dtype torch.int64"),
        (dict(w1="nope"), TypeError, r"`w1` must be a torch.Tensor"),
        (dict(b1=torch.randn(7, device="meta")), ValueError, r"`b1` is on meta.*`context` is on cpu"),
        (dict(context=torch.randn(2, 5, 0, 4)), ValueError, r"at least one cell"),
    ],
)
@pytest.mark.parametrize("fn", [gla, gla_reference, gla_split], ids=["gla", "gla_reference", "gla_split"])
def test_bad_inputs_raise_clear_errors(fn, changes, error, pattern):
    with pytest.raises(error, match=pattern):
        fn(**_bad(**changes))
