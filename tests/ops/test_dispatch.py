"""gla(): validation, backend choice and errors, empty batches."""
import logging

import pytest
import torch

from glamor_fast import available_backends, gla, gla_reference
from glamor_fast.ops import registry as backends
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


def test_auto_on_the_cpu_by_dtype():
    """cpp for float32 / float64 / float16; PyTorch's own bfloat16 kernels (the reference) for
    bfloat16, which cpp would compute in float32 (measured slower: registry.AUTO_POLICY_BY_DTYPE)."""
    cpu = torch.device("cpu")
    for dtype in (torch.float32, torch.float64, torch.float16):
        assert backends.choose_backend("auto", cpu, dtype) == "cpp", dtype
    assert backends.choose_backend("auto", cpu, torch.bfloat16) == "reference"
    assert backends.choose_backend("cpp", cpu, torch.bfloat16) == "cpp"  # still selectable


def test_empty_batch_returns_empty_differentiable_outputs():
    face, context, *params = make_gla_inputs(B=0, Dc=5, H=2, W=3, requires_grad=True)
    pooled, attn = gla(face, context, *params)
    assert pooled.shape == (0, 5) and attn.shape == (0, 2, 3)
    (pooled.sum() + attn.sum()).backward()
    assert context.grad.shape == context.shape


def _bad(**changes):
    names = ["face", "context", "w1", "b1", "w2", "b2", "hidden_scale", "hidden_shift"]
    kwargs = dict(zip(names, make_gla_inputs(B=2, Df=6, Dc=5, H=3, W=4, Hd=7, dtype=torch.float32)))
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
@pytest.mark.parametrize("fn", [gla, gla_reference], ids=["gla", "gla_reference"])
def test_bad_inputs_raise_clear_errors(fn, changes, error, pattern):
    with pytest.raises(error, match=pattern):
        fn(**_bad(**changes))


def test_backend_must_be_a_string():
    with pytest.raises(TypeError, match="`backend` must be a string"):
        gla(*make_gla_inputs(), backend=None)


def test_dispatch_traces_without_graph_breaks():
    inputs = make_gla_inputs(B=2, dtype=torch.float32, folded_bn=True)
    compiled = torch.compile(lambda *xs: gla(*xs, backend="reference"), fullgraph=True, backend="eager")
    for got, want in zip(compiled(*inputs), gla_reference(*inputs)):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("backward_inside", [False, True], ids=["backward-after", "backward-inside"])
@pytest.mark.parametrize("backend", available_backends(torch.device("cpu"), torch.float32))
def test_autocast_does_not_change_the_op(backend, backward_inside):
    # The op computes in its inputs' dtype; a training loop under autocast must get exactly what
    # it gets without autocast. Backward inside autocast is not PyTorch's recommended pattern and
    # recasts the reference's plain-autograd backward, but the fused backends guard against it.
    if backward_inside and backend == "reference":
        pytest.skip("the reference backward is plain autograd, which autocast recasts by design")
    inputs = make_gla_inputs(B=2, H=3, W=3, dtype=torch.float32, folded_bn=True, requires_grad=True)
    args = [t for t in inputs if t is not None]

    def forward():
        pooled, attn = gla(*inputs, backend=backend)
        return pooled, attn, pooled.square().sum() + attn.square().sum()

    def grads(loss):
        return list(torch.autograd.grad(loss, args))

    pooled, attn, loss = forward()
    plain = [pooled, attn, *grads(loss)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pooled, attn, loss = forward()
        inside = grads(loss) if backward_inside else None
    under_autocast = [pooled, attn, *(inside if backward_inside else grads(loss))]
    for got, want in zip(under_autocast, plain):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def _fused_backends(dtype):
    """The fused backends that run here (cpp; triton through the interpreter or on a GPU)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return [(n, device) for n in ("cpp", "triton", "cuda")
            if backends.unavailable_reason(n, device, dtype) is None]


@pytest.mark.parametrize("name,device", _fused_backends(torch.float32))
def test_double_backward_through_every_fused_backend(name, device):
    """create_graph=True (a gradient penalty) gives the reference's second-order gradients,
    not a silent zero. float32 against the float64 reference: float32 rounding of both orders."""
    x64 = make_gla_inputs(B=2, Df=4, Dc=5, H=2, W=3, Hd=3, folded_bn=True)

    def penalty_grads(fn, x):
        xs = [t.clone().requires_grad_(True) for t in x]
        p, a = fn(*xs)
        (gc,) = torch.autograd.grad(p.square().sum() + a.sin().sum(), [xs[1]], create_graph=True)
        return torch.autograd.grad(gc.square().sum(), xs)

    got = penalty_grads(lambda *t: gla(*t, backend=name), [t.float().to(device) for t in x64])
    want = penalty_grads(gla_reference, x64)
    assert got[2].abs().max() > 1e-3  # dw1 of the penalty is a real second-order term
    for g, w in zip(got, want):
        torch.testing.assert_close(g.double().cpu(), w, rtol=1e-4, atol=1e-5 * (1 + w.abs().max().item()))


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
    if backends.unavailable_reason("triton", torch.device("cpu"), torch.float32) is None:
        x = make_gla_inputs(dtype=torch.float32)
        with pytest.raises(ValueError, match="recompute=False .* cpp backend only"):
            gla(*x, backend="triton", recompute=False)


def test_choose_for_compile_is_marked_as_torch_compiler_would():
    """backends marks _choose_for_compile constant by hand (importing torch._dynamo for the
    decorator cost a second of start-up): the mark must be what torch.compiler sets."""
    from glamor_fast.ops import registry as backends

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
