"""The Triton backend: the fused kernels of ``glamor_fast.kernels.gla`` as torch.library ops.

Two custom ops, opaque to torch.compile (so ``torch.compile(fullgraph=True)`` traces a model
that calls them without graph breaks, using the fake kernels below for shapes):

    glamor_fast::gla_triton_fwd(face, context, w1, b1, w2, b2, hidden_scale?, hidden_shift?,
                                deterministic) -> (pooled, attn, lse, probs, u)
    glamor_fast::gla_triton_bwd(grad_pooled, grad_attn?, grad_lse?, face, context, w1, w2,
                                hidden_scale?, hidden_shift?, lse, probs, u, needs, deterministic)
                                -> [dface, dcontext, dw1, db1, dw2, db2, dscale, dshift]

The forward's autograd formula calls the backward op; gradients not asked for (per
``needs_input_grad``) are not computed and come back from the op as empty tensors. The
backward op itself is not differentiable: a backward with create_graph=True takes its
gradients from ``gla_reference_vjp`` (the reference formulas), so double backward is right.
"""
from __future__ import annotations

import os
from typing import Optional

import torch
from torch import Tensor

from .reference import gla_reference_vjp

try:
    import triton  # noqa: F401
    _TRITON_ERROR: Optional[str] = None
except ImportError as exc:  # the backend reports itself unavailable instead of failing import
    _TRITON_ERROR = str(exc)

_kernels = None


def _load_kernels():
    """glamor_fast.kernels.gla when installed; kernels.gla in a source checkout."""
    global _kernels
    if _kernels is None:
        try:
            from glamor_fast.kernels import gla as module
        except ModuleNotFoundError as exc:
            if exc.name not in ("glamor_fast.kernels", "glamor_fast.kernels.gla"):
                raise
            from kernels import gla as module  # repository root on sys.path
        _kernels = module
    return _kernels


def _interpreter_on() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def unavailable_reason(device: torch.device, dtype: torch.dtype) -> Optional[str]:
    """None when the Triton kernels can run on tensors of this device and dtype."""
    device = torch.device(device)
    if _TRITON_ERROR is not None:
        return f"triton is not importable ({_TRITON_ERROR}); install it with `pip install triton==3.9.0`"
    if dtype == torch.float64:
        return "float64 runs on the reference or cpp backend (the Triton kernels take float32, float16, bfloat16)"
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return f"the Triton kernels take float32, float16 or bfloat16, not {dtype}"
    if device.type == "cuda":
        return None
    if device.type == "cpu":
        if not _interpreter_on():
            return ("CPU tensors need the Triton interpreter: set TRITON_INTERPRET=1 before importing "
                    "glamor_fast to run the Triton kernels on the CPU through the interpreter "
                    "(slow; for testing), or use backend='cpp'")
        if _kernels is not None and not _kernels.INTERPRET:
            return ("TRITON_INTERPRET=1 was set after the Triton kernels were defined; set it "
                    "before importing glamor_fast")
        return None
    return f"the Triton kernels run on CUDA devices (or the CPU through the interpreter), not {device.type}"


# ---------------------------------------------------------------------------------------------
# Forward op
# ---------------------------------------------------------------------------------------------
@torch.library.custom_op("glamor_fast::gla_triton_fwd", mutates_args=())
def gla_triton_fwd(face: Tensor, context: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor,
                   hidden_scale: Optional[Tensor], hidden_shift: Optional[Tensor],
                   deterministic: bool = True
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """pooled (B, Dc), attn (B, H, W) in the inputs' dtype; lse (B,), probs (B, H*W) (the
    float32 softmax) and u (B, Hd) in float32, saved for the backward."""
    return tuple(_load_kernels().gla_forward(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift))


@gla_triton_fwd.register_fake
def _(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift, deterministic=True):
    B, Dc, H, W = context.shape
    Hd = w1.shape[0]
    f32 = dict(dtype=torch.float32, device=context.device)
    return (face.new_empty(B, Dc), face.new_empty(B, H, W), torch.empty(B, **f32),
            torch.empty(B, H * W, **f32), torch.empty(B, Hd, **f32))


# ---------------------------------------------------------------------------------------------
# Backward op
# ---------------------------------------------------------------------------------------------
_GRAD_NAMES = ("face", "context", "w1", "b1", "w2", "b2", "hidden_scale", "hidden_shift")


@torch.library.custom_op("glamor_fast::gla_triton_bwd", mutates_args=())
def gla_triton_bwd(grad_pooled: Tensor, grad_attn: Optional[Tensor], grad_lse: Optional[Tensor],
                   face: Tensor, context: Tensor,
                   w1: Tensor, w2: Tensor, hidden_scale: Optional[Tensor],
                   hidden_shift: Optional[Tensor], lse: Tensor, scores: Tensor, u: Tensor,
                   needs: list[bool], deterministic: bool) -> list[Tensor]:
    """Gradients of (face, context, w1, b1, w2, b2, hidden_scale, hidden_shift); an empty
    tensor where ``needs`` (face, context, w1, b1, w2, b2, bn) says it is not wanted."""
    grads = _load_kernels().gla_backward(grad_pooled, grad_attn, face, context, w1, w2,
                                         hidden_scale, hidden_shift, lse, scores, u, needs, deterministic,
                                         grad_lse=grad_lse)
    return [g if g is not None else context.new_empty(0) for g in grads]


def _grad_shapes(face, context, w1, hidden_scale, needs):
    Hd = w1.shape[0]
    shapes = [face.shape, context.shape, w1.shape, (Hd,), (Hd,), (), (Hd,), (Hd,)]
    wanted = list(needs[:6]) + [needs[6] and hidden_scale is not None] * 2
    return [tuple(s) if w else (0,) for s, w in zip(shapes, wanted)]


@gla_triton_bwd.register_fake
def _(grad_pooled, grad_attn, grad_lse, face, context, w1, w2, hidden_scale, hidden_shift, lse, scores, u,
      needs, deterministic):
    out = []
    for i, shape in enumerate(_grad_shapes(face, context, w1, hidden_scale, needs)):
        if i == 1 and shape != (0,):
            out.append(torch.empty_like(context, memory_format=torch.preserve_format))
        else:
            out.append(context.new_empty(shape))
    return out


# ---------------------------------------------------------------------------------------------
# Autograd
# ---------------------------------------------------------------------------------------------
def _setup_context(ctx, inputs, output):
    face, context, w1, b1, w2, b2, hidden_scale, hidden_shift, deterministic = inputs
    _, _, lse, scores, u = output
    ctx.mark_non_differentiable(scores, u)  # lse is differentiable, as the cpp/cuda op's
    ctx.set_materialize_grads(False)  # an unused attn (or pooled) arrives as None: less work
    ctx.save_for_backward(face, context, w1, w2, hidden_scale, hidden_shift, lse, scores, u, b1, b2)
    ctx.deterministic = deterministic
    ctx.b2_shape = b2.shape


def _backward(ctx, grad_pooled, grad_attn, grad_lse, *unused):
    face, context, w1, w2, hidden_scale, hidden_shift, lse, scores, u, b1, b2 = ctx.saved_tensors
    ng = ctx.needs_input_grad
    if torch.is_grad_enabled():  # create_graph=True: gla_triton_bwd has no derivative
        inputs = (face, context, w1, b1, w2, b2, hidden_scale, hidden_shift)
        needs8 = [bool(ng[i]) and inputs[i] is not None for i in range(8)]
        return (*gla_reference_vjp(inputs, needs8, grad_pooled, grad_attn, grad_lse), None)
    needs = [ng[0], ng[1], ng[2], ng[3], ng[4], ng[5], ng[6] or ng[7]]
    if grad_pooled is None:
        grad_pooled = torch.zeros(face.shape[0], context.shape[1], dtype=context.dtype, device=context.device)
    # The host side uses torch matmuls: autocast (if backward runs inside it) must not recast them.
    with torch.autocast(context.device.type, enabled=False):
        grads = torch.ops.glamor_fast.gla_triton_bwd(
            grad_pooled, grad_attn, grad_lse, face, context, w1, w2, hidden_scale, hidden_shift, lse,
            scores, u, needs, ctx.deterministic)
    result = []
    for i, g in enumerate(grads):
        wanted = ng[i] and (i < 6 or hidden_scale is not None)
        if not wanted:
            result.append(None)
        elif i == 5:
            result.append(g.reshape(ctx.b2_shape))
        else:
            result.append(g)
    return (*result, None)


gla_triton_fwd.register_autograd(_backward, setup_context=_setup_context)


def gla(face, context, w1, b1, w2, b2, hidden_scale=None, hidden_shift=None, deterministic=True,
        recompute=None):
    """Backend entry point (inputs validated by ``glamor_fast.ops.gla``): (pooled, attn).

    The Triton kernels always recompute the hidden layer: ``recompute=False`` is refused."""
    if recompute is not None and not recompute:
        raise ValueError("gla: recompute=False (save the hidden layer for the backward) is implemented "
                         "by the cpp backend only; the Triton kernels always recompute it "
                         "(use recompute=None or True)")
    pooled, attn = torch.ops.glamor_fast.gla_triton_fwd(
        face, context, w1, b1, w2, b2, hidden_scale, hidden_shift, deterministic)[:2]
    return pooled, attn
