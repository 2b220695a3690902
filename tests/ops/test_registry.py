"""The backend registry (glamor_fast.ops.registry): every op's backends, what ``auto`` picks,
clear errors for unknown or unavailable backends, and gla()'s dispatch through it."""
import logging

import pytest
import torch

from glamor_fast import available_backends, gla, gla_reference
from glamor_fast.ops import registry as backends
from glamor_fast.ops.registry import AUTO_POLICY, BACKENDS, choose_backend
from tests.helpers import make_gla_inputs


def test_reference_backend_equals_gla_reference():
    inputs = make_gla_inputs(B=2, folded_bn=True)
    for got, want in zip(gla(*inputs, backend="reference"), gla_reference(*inputs)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_reference_is_always_available():
    assert "reference" in available_backends(torch.device("cpu"), torch.float64)


def test_unknown_backend_names_the_available_ones():
    with pytest.raises(ValueError, match=r"unknown backend 'nope'.*Available for cpu.*reference"):
        gla(*make_gla_inputs(), backend="nope")


def test_unavailable_backend_raises_instead_of_falling_back():
    # float64 never runs on the triton backend, whatever is installed.
    with pytest.raises(RuntimeError, match=r"backend 'triton' is not available.*Available: .*reference"):
        gla(*make_gla_inputs(dtype=torch.float64), backend="triton")


def test_auto_logs_its_choice_once(caplog, monkeypatch):
    monkeypatch.setattr(backends, "_auto_logged", set())
    inputs = make_gla_inputs(dtype=torch.float64)
    with caplog.at_level(logging.INFO, logger="glamor_fast"):
        gla(*inputs)
        gla(*inputs)
    choices = [r.getMessage() for r in caplog.records if "backend='auto' chose" in r.getMessage()]
    assert len(choices) == 1
    name = backends.choose_backend("auto", torch.device("cpu"), torch.float64)
    assert repr(name) in choices[0]


def test_auto_picks_cpp_on_cpu():
    assert backends.choose_backend("auto", torch.device("cpu"), torch.float32) == "cpp"


def test_auto_on_the_cpu_by_dtype():
    """cpp for float32 / float64 / float16; PyTorch's own bfloat16 kernels (the reference) for
    bfloat16, which cpp would compute in float32 (measured slower: registry.AUTO_POLICY_BY_DTYPE)."""
    cpu = torch.device("cpu")
    for dtype in (torch.float32, torch.float64, torch.float16):
        assert backends.choose_backend("auto", cpu, dtype) == "cpp", dtype
    assert backends.choose_backend("auto", cpu, torch.bfloat16) == "reference"
    assert backends.choose_backend("cpp", cpu, torch.bfloat16) == "cpp"  # still selectable


def test_backend_must_be_a_string():
    with pytest.raises(TypeError, match="`backend` must be a string"):
        gla(*make_gla_inputs(), backend=None)


def test_dispatch_traces_without_graph_breaks():
    inputs = make_gla_inputs(B=2, dtype=torch.float32, folded_bn=True)
    compiled = torch.compile(lambda *xs: gla(*xs, backend="reference"), fullgraph=True, backend="eager")
    for got, want in zip(compiled(*inputs), gla_reference(*inputs)):
        torch.testing.assert_close(got, want)


def test_choose_for_compile_is_marked_as_torch_compiler_would():
    """The registry marks choose_for_compile constant by hand (importing torch._dynamo for the
    decorator cost a second of start-up): the mark must be what torch.compiler sets."""

    def probe():
        return None

    marked = torch.compiler.assume_constant_result(probe)
    names = {k for k in vars(marked) if "dynamo" in k}
    assert names and all(getattr(backends.choose_for_compile, k, None) == v for k, v in vars(marked).items())


def test_import_does_not_load_dynamo():
    import subprocess
    import sys

    code = "import sys, glamor_fast, glamor_fast.cli.predict; print('torch._dynamo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr[-2000:]


@pytest.mark.parametrize("op", list(BACKENDS))
def test_every_op_answers(op):
    """Each op: the reference always runs; auto picks an available backend from its policy (the
    compiled one on the CPU where the policy names one: CI builds the extension); every known
    backend says why not or runs; an unknown name lists the available ones."""
    cpu = torch.device("cpu")
    names = backends.available_backends(cpu, torch.float32, op=op)
    assert "reference" in names and set(names) <= set(BACKENDS[op])
    chosen = choose_backend("auto", cpu, torch.float32, op=op)
    assert chosen in names
    policy = AUTO_POLICY.get((op, "cpu"), ("reference",))
    assert chosen == next(n for n in policy if n in names)
    if "cpp" in policy:
        assert chosen == "cpp", backends.unavailable_reason("cpp", cpu, torch.float32, op)
    for name in BACKENDS[op]:
        reason = backends.unavailable_reason(name, cpu, torch.float32, op)
        assert (reason is None) == (name in names)
        if reason is not None:
            assert isinstance(reason, str) and reason
            with pytest.raises(backends.BackendUnavailableError, match=f"{op}: backend {name!r} is not available"):
                choose_backend(name, cpu, torch.float32, op=op)
    with pytest.raises(ValueError, match=f"{op}: unknown backend 'nope'.*Available for cpu"):
        choose_backend("nope", cpu, torch.float32, op=op)


def test_unknown_op_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown op 'nope'; known ops: gla"):
        backends.available_backends(torch.device("cpu"), op="nope")

