"""The Triton backend of the GLA op: host wrappers that launch ``triton_kernels`` as the ops
``glamor_fast::gla_forward_triton`` / ``gla_backward_triton``, with the compiled ops' schemas,
fakes and autograd (``contract.py``: one contract for the three fused backends).

The forward returns (pooled, attn, lse, hidden) with hidden always (0,): the Triton kernels
recompute the hidden layer and refuse save_hidden=True. The backward reads the saved attn (the
softmax in the inputs' dtype, as the cpp and cuda backends do) and recomputes u = W1f v_f + b1.
Both ops are opaque to torch.compile (``torch.compile(fullgraph=True)`` traces a model that
calls them without graph breaks, from the fake kernels).
"""
from __future__ import annotations

import contextlib
import os
from typing import Optional, Sequence

import torch

from ..extension import empty_like_layout
from . import contract

try:
    import triton
    _TRITON_ERROR: Optional[str] = None
except ImportError as exc:  # the backend reports itself unavailable instead of failing import
    _TRITON_ERROR = str(exc)

_kernels = None


def _load_kernels():
    """The Triton kernels module (imported on first use: defining the kernels needs triton)."""
    global _kernels
    if _kernels is None:
        from . import triton_kernels
        _kernels = triton_kernels
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


def _input_precision(dtype: torch.dtype) -> str:
    """For fp32 tiles: "ieee" (exact fp32) unless PyTorch itself may use tf32 for fp32 matmuls
    (torch.set_float32_matmul_precision("high"/"medium")), then "tf32". 16-bit tiles take the
    native tensor-core path whatever this says (Triton's default, "tf32", is passed)."""
    if _load_kernels().INTERPRET:
        return "ieee"
    if dtype != torch.float32:
        return "tf32"
    return "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"


def _on_device(device: torch.device):
    """Triton launches on the current CUDA device: make it the tensors' one."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _block_h(hd: int) -> int:
    max_hidden = _load_kernels().MAX_HIDDEN
    if hd > max_hidden:
        raise ValueError(f"backend 'triton': hidden_dim {hd} > {max_hidden} is not supported (a tile holds "
                         f"the whole hidden layer); use backend 'cuda' or 'reference'")
    return max(16, triton.next_power_of_2(hd))


def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 1


def _cell_splits(B: int, N: int, device: torch.device, num_splits: Optional[int]) -> tuple[int, int]:
    """(S, cells per split): split a batch element over S programs when B alone cannot fill the
    GPU; never more splits than cells, never an empty split."""
    if num_splits is None:
        num_splits = 1 if device.type != "cuda" else max(1, min(-(-2 * _num_sms(device) // B), -(-N // 256)))
    num_splits = max(1, min(int(num_splits), N))
    per_split = -(-N // num_splits)
    return -(-N // per_split), per_split


def _face_projection(face, w1, b1):
    """u = W1f v_f + b1 (B, Hd) fp32, by the forward's kernel (so the backward's is the same)."""
    K = _load_kernels()
    B, Df = face.shape
    Hd = w1.shape[0]
    u = torch.empty(B, Hd, device=face.device, dtype=torch.float32)
    with _on_device(face.device):
        K._gla_face_proj_kernel[(B, triton.cdiv(Hd, 32))](
            face, w1, b1.contiguous(), u, Df, Hd, face.stride(0), face.stride(1), w1.stride(0), w1.stride(1),
            BLOCK_H=32, BLOCK_F=64)
    return u


def gla_forward(face, context, w1, b1, w2, b2, hidden_scale=None, hidden_shift=None, save_hidden=False,
                num_splits: Optional[int] = None):
    """Fused GLA forward with the contract's outputs (``contract.FORWARD_SCHEMA``): pooled (B, Dc)
    and attn (B, H, W) in the inputs' dtype, lse (B,) fp32 and an empty (0,) fp32 hidden.
    Inputs as in ``gla_reference`` (already validated, one dtype/device). ``num_splits``: cell
    splits per batch element (None: enough programs to fill the GPU)."""
    if save_hidden:
        raise RuntimeError("gla_forward_triton: the Triton kernels recompute the hidden layer; "
                           "save_hidden=True is not supported")
    K = _load_kernels()
    B, Df = face.shape
    _, Dc, H, W = context.shape
    Hd = w1.shape[0]
    N = H * W
    dev, dtype = context.device, context.dtype
    f32 = dict(device=dev, dtype=torch.float32)
    block_h = _block_h(Hd)
    w2 = w2.contiguous()
    has_bn = hidden_scale is not None
    scale = hidden_scale.contiguous() if has_bn else w2
    shift = hidden_shift.contiguous() if has_bn else w2

    u = _face_projection(face, w1, b1)
    S, per_split = _cell_splits(B, N, dev, num_splits)
    final = S == 1
    scores = torch.empty(B, N, **f32)
    m = torch.empty(B, S, **f32)
    l = torch.empty(B, S, **f32)
    acc = torch.empty(B if not final else 1, S, Dc, **f32)
    lse = torch.empty(B, **f32)
    pooled = torch.empty(B, Dc, device=dev, dtype=dtype)
    attn = torch.empty(B, H, W, device=dev, dtype=dtype)
    with _on_device(dev):
        K._gla_fwd_kernel[(B, S)](
            context, w1, u, w2, b2.reshape(1), scale, shift, scores, m, l, acc,
            lse, pooled, attn,
            Df, N, W, Dc, Hd, per_split, S,
            *context.stride(), w1.stride(0), w1.stride(1),
            HAS_BN=has_bn, FINAL=final, DOT_FP32=K.INTERPRET, INPUT_PRECISION=_input_precision(dtype),
            BLOCK_H=block_h)
    if not final:  # merge the cell splits
        m_max = m.amax(dim=1, keepdim=True)
        weight = torch.exp(m - m_max)                               # (B, S)
        l_tot = (weight * l).sum(dim=1)                             # (B,)
        pooled = ((weight.unsqueeze(-1) * acc).sum(dim=1) / l_tot.unsqueeze(-1)).to(dtype)
        lse = m_max.squeeze(1) + torch.log(l_tot)
        scores = torch.exp(scores - m_max) / l_tot.unsqueeze(1)     # the fp32 softmax
        attn = scores.to(dtype, copy=True).view(B, H, W)  # a custom op's outputs may not alias
    return pooled, attn, lse, torch.empty(0, **f32)


def _cells(context: torch.Tensor) -> torch.Tensor:
    """(B, Dc, H, W) -> (B * H * W, Dc): a view for channels_last, one copy otherwise."""
    B, Dc, H, W = context.shape
    return context.permute(0, 2, 3, 1).reshape(B * H * W, Dc)


def gla_backward(grad_pooled, grad_attn, grad_lse, face, context, w1, b1, w2, b2, hidden_scale,
                 hidden_shift, pooled, attn, lse, hidden, needs_grad: Sequence[bool],
                 num_splits: Optional[int] = None):
    """Fused GLA backward with the contract's arguments and results (``contract.BACKWARD_SCHEMA``):
    the 8 input gradients, an empty (0,) tensor where ``needs_grad`` says not needed.

    A None output gradient is zero. d lse / d s_i = a_i, so g_lse enters as delta - g_lse and
    db2 = sum_b g_lse. Every reduction
    runs in a fixed order, so the result is bitwise reproducible. dW1c = dz^T V and dV = a gp^T +
    dz W1c are cuBLAS matmuls over a (B * N, Hd) dz workspace (fp32 for fp32 inputs, else the
    inputs' dtype) that lives for the duration of this call.
    """
    K = _load_kernels()
    need_face, need_ctx, need_w1, need_b1, need_w2, need_b2 = (bool(n) for n in needs_grad[:6])
    B, Df = face.shape
    _, Dc, H, W = context.shape
    Hd = w1.shape[0]
    N = H * W
    dev, dtype = context.device, context.dtype
    f32 = dict(device=dev, dtype=torch.float32)
    has_bn = hidden_scale is not None
    need_bn = (bool(needs_grad[6]) or bool(needs_grad[7])) and has_bn
    out = [context.new_empty((0,)) for _ in range(8)]  # outputs may not alias
    if need_b2:  # softmax is shift invariant: only lse depends on b2
        out[5] = (grad_lse.to(torch.float32).sum().to(dtype).reshape(b2.shape) if grad_lse is not None
                  else torch.zeros_like(b2))
    need_du = need_face or need_w1 or need_b1
    if not (need_ctx or need_w1 or need_du or need_w2 or need_bn):
        return out
    block_h = _block_h(Hd)
    probs = attn.reshape(B, N)  # the saved softmax, in the inputs' dtype (the kernels read it as fp32)
    u = _face_projection(face, w1, b1)

    gp = (grad_pooled.to(torch.float32).contiguous() if grad_pooled is not None
          else torch.zeros(B, Dc, **f32))
    has_ga = grad_attn is not None
    ga = grad_attn.reshape(B, N).to(torch.float32).contiguous() if has_ga else gp  # gp: never read
    g = torch.empty(B, N, **f32)
    delta = torch.empty(B, **f32)

    S, per_split = _cell_splits(B, N, dev, num_splits)
    w2c = w2.contiguous()
    scale = hidden_scale.contiguous() if has_bn else w2c
    shift = hidden_shift.contiguous() if has_bn else w2c
    du = torch.empty(B * S, Hd, **f32)
    dw2 = torch.empty(B * S if need_w2 else 1, Hd, **f32)
    dscale = torch.empty(B * S if need_bn else 1, Hd, **f32)
    dshift = torch.empty(B * S if need_bn else 1, Hd, **f32)
    dz_dtype = torch.float32 if dtype in (torch.float32, torch.float64) else dtype
    need_dz = need_w1 or need_ctx
    dz = torch.empty(B * N if need_dz else 1, Hd, device=dev, dtype=dz_dtype)
    with _on_device(dev):
        K._gla_delta_kernel[(B,)](
            context, probs, gp, ga, g, delta, N, W, Dc, Hd, *context.stride(),
            HAS_GA=has_ga, BLOCK_H=block_h)
        if grad_lse is not None:
            delta -= grad_lse.reshape(B).to(torch.float32)
        K._gla_bwd_kernel[(B, S)](
            context, w1, u, w2c, scale, shift, probs, g, delta,
            dz, du, dw2, dscale, dshift,
            Df, N, W, Dc, Hd, per_split, S,
            *context.stride(), w1.stride(0), w1.stride(1),
            HAS_BN=has_bn, NEED_DZ=need_dz, NEED_DW2=need_w2, NEED_DBN=need_bn,
            DOT_FP32=K.INTERPRET, INPUT_PRECISION=_input_precision(dtype), BLOCK_H=block_h)

    if need_ctx:
        # dV = a gp^T + dz W1c, one (B*N, Hd) x (Hd, Dc) GEMM onto the rank-1 term, in the
        # cells' (channels_last) order; NCHW and other layouts take one copy into place.
        outer = (probs.to(torch.float32).unsqueeze(2) * gp.unsqueeze(1)).to(dz_dtype).view(B * N, Dc)
        dcells = torch.addmm(outer, dz, w1[:, Df:].to(dz_dtype)).to(dtype)       # (B*N, Dc)
        dctx = dcells.view(B, H, W, Dc).permute(0, 3, 1, 2)
        like = empty_like_layout(context)
        out[1] = dctx if dctx.stride() == like.stride() else like.copy_(dctx)
    if need_du:
        du_b = du.view(B, S, Hd).sum(dim=1)                          # (B, Hd)
        if need_face:
            out[0] = (du_b @ w1[:, :Df].to(torch.float32)).to(dtype)
        if need_b1:
            out[3] = du_b.sum(dim=0).to(dtype)
    if need_w1:
        dw1f = du_b.t() @ face.to(torch.float32)                      # (Hd, Df)
        dw1c = dz.t() @ _cells(context).to(dz_dtype)                   # (Hd, Dc)
        out[2] = torch.cat([dw1f, dw1c.to(torch.float32)], dim=1).to(dtype)
    if need_w2:
        out[4] = dw2.sum(dim=0).to(dtype)
    if need_bn and needs_grad[6]:  # the contract: an empty (0,) tensor for a gradient not asked for
        out[6] = dscale.sum(dim=0).to(dtype)
    if need_bn and needs_grad[7]:
        out[7] = dshift.sum(dim=0).to(dtype)
    return out


# ---------------------------------------------------------------------------------------------
# The ops: the compiled ops' schemas, fakes and autograd (contract.py)
# ---------------------------------------------------------------------------------------------
if _TRITON_ERROR is None:
    torch.library.define("glamor_fast::gla_forward_triton", contract.FORWARD_SCHEMA)
    torch.library.define("glamor_fast::gla_backward_triton", contract.BACKWARD_SCHEMA)
    torch.library.impl("glamor_fast::gla_forward_triton", ("cpu", "cuda"))(gla_forward)
    torch.library.impl("glamor_fast::gla_backward_triton", ("cpu", "cuda"))(gla_backward)
    contract.register("gla_forward_triton", "gla_backward_triton")


def gla(face, context, w1, b1, w2, b2, hidden_scale=None, hidden_shift=None, recompute=None):
    """Backend entry point (inputs validated by ``glamor_fast.ops.gla.gla``): (pooled, attn).

    The Triton kernels always recompute the hidden layer: ``recompute=False`` is refused."""
    contract.save_hidden(recompute, False, "triton", face, context, w1)
    out = contract.apply("gla_forward_triton", "gla_backward_triton", False, face, context, w1, b1, w2, b2,
                         hidden_scale, hidden_shift)
    return out[0], out[1]
