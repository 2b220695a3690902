"""The GLA benchmark cases through pytest-benchmark: ``pytest bench/ --benchmark-only``.

Not part of the default test run (pyproject's testpaths is tests/). Cases: the --quick set
of ``python -m bench.gla`` (paper B=32 and B=256, hires B=8 at 56x56); backends: eager,
torch.compile and every backend available on the CPU at collection time (the Triton
interpreter left out). Add ``--benchmark-group-by=param:case`` to compare backends per case.
"""
import pytest
import torch

from bench.gla import make_inputs, make_op, select_backends
from bench.suites import get_cases

CASES = get_cases("all", quick=True)
DEVICE = torch.device("cpu")
BACKENDS = select_backends(DEVICE, None)[0]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.name)
def case_inputs(request):
    return request.param, make_inputs(request.param, DEVICE, seed=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fwd(benchmark, case_inputs, backend):
    case, s = case_inputs
    op = make_op(backend)
    benchmark.group = f"fwd {case.name}"

    def fwd():
        with torch.no_grad():
            return op(*s["inputs"])

    pooled, attn = benchmark(fwd)
    assert pooled.shape == (case.B, case.Dc) and attn.shape == (case.B, case.H, case.W)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fwdbwd(benchmark, case_inputs, backend):
    case, s = case_inputs
    op = make_op(backend)
    benchmark.group = f"fwdbwd {case.name}"
    grads = benchmark(lambda: torch.autograd.grad(op(*s["inputs"]), s["inputs"], s["grads"]))
    assert grads[1].shape == s["inputs"][1].shape


@pytest.mark.parametrize("backend", BACKENDS)
def test_bwd(benchmark, case_inputs, backend):
    case, s = case_inputs
    op = make_op(backend)
    benchmark.group = f"bwd {case.name}"

    def setup():  # an untimed forward builds the graph each timed backward consumes
        return (op(*s["inputs"]), s["inputs"], s["grads"]), {}

    benchmark.pedantic(torch.autograd.grad, setup=setup, rounds=10, warmup_rounds=2)
