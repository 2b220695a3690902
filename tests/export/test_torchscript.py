"""TorchScript, for the README's advice (use torch.export; if you must trace, trace under
torch.no_grad()): the traced network passes torch.jit.trace's own check there and runs other
batch sizes. (In grad mode the check fails: the fused GLA op decides in Python whether to keep
its hidden layer for a backward, and the two traces the check compares decide differently.)"""
import warnings

import torch

from glamor_fast.export.model import example_inputs


def _trace(net):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's per-shape-check warnings and torch.jit's deprecation
        return torch.jit.trace(net, example_inputs(2))


def test_trace_under_no_grad_passes_its_check_and_runs_other_batches(export_net):
    net = export_net[0]
    with torch.no_grad():
        traced = _trace(net)  # check_trace=True (the default)
        face, context = example_inputs(5, torch.Generator().manual_seed(5))
        for got, want in zip(traced(face, context), net(face, context)):
            torch.testing.assert_close(got, want, atol=1e-6, rtol=0)

