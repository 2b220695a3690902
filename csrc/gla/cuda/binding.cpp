// ATen glue for the CUDA kernels of gla.cu: checks, dtype conversion of the small
// parameters, workspaces, the stream, and the few reductions done with ATen ops.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <tuple>

#include "gla/checks.h"
#include "gla/host.h"
#include "gla.h"

namespace glamor_fast {
namespace cuda {
namespace {

Dtype dtype_tag(at::ScalarType st) {
  switch (st) {
    case at::kFloat: return Dtype::F32;
    case at::kDouble: return Dtype::F64;
    case at::kHalf: return Dtype::F16;
    case at::kBFloat16: return Dtype::BF16;
    default: TORCH_CHECK(false, "glamor_fast: unsupported dtype ", st);
  }
}

using host::compute_type;

void check_launch(int err, const char* what) {
  TORCH_CHECK(err == 0, "glamor_fast: ", what, " failed: ",
              cudaGetErrorString(static_cast<cudaError_t>(err)));
}

// The shared parameters (csrc/gla/host.h) plus W1c itself (the backward reads it by rows) and
// b2 as a 0-dim tensor: b2 is left out of the kernels' scores (softmax is shift invariant) and
// added to lse here, so no device-to-host copy is needed.
struct Prepared : host::Params {
  at::Tensor w1c, b2;
};

Prepared prepare(const at::Tensor& face, const at::Tensor& w1, const at::Tensor& b1,
                 const at::Tensor& w2, const at::Tensor& b2, const c10::optional<at::Tensor>& scale,
                 const c10::optional<at::Tensor>& shift, const GlaDims& d) {
  Prepared p;
  static_cast<host::Params&>(p) = host::prepare_params(face, w1, b1, w2, scale, shift, d);
  p.w1c = p.w1.narrow(1, d.Df, d.Dc).contiguous();
  p.b2 = b2.to(compute_type(w1.scalar_type())).reshape({});
  return p;
}

Cells make_cells(const at::Tensor& context, const GlaDims& d) {
  return Cells{context.data_ptr(), context.stride(0), context.stride(1), context.stride(2),
               context.stride(3), d.B, d.Dc, d.H, d.W};
}

Weights make_weights(const Prepared& p, const GlaDims& d) {
  return Weights{p.u.data_ptr(),
                 p.w1c.data_ptr(),
                 p.w1c_t.data_ptr(),
                 p.w2.data_ptr(),
                 p.scale.defined() ? p.scale.data_ptr() : nullptr,
                 p.shift.defined() ? p.shift.data_ptr() : nullptr,
                 0.0,
                 d.Hd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> gla_forward_cuda(
    const at::Tensor& face, const at::Tensor& context, const at::Tensor& w1, const at::Tensor& b1,
    const at::Tensor& w2, const at::Tensor& b2, const c10::optional<at::Tensor>& hidden_scale,
    const c10::optional<at::Tensor>& hidden_shift, bool save_hidden) {
  const auto d = check_gla_args(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift,
                                c10::DeviceType::CUDA);
  TORCH_CHECK(!save_hidden, "glamor_fast: the CUDA kernels always recompute the hidden layer "
              "(save_hidden / recompute=False is CPU-only for now)");
  c10::cuda::CUDAGuard guard(context.device());
  const auto at_ = compute_type(context.scalar_type());
  auto aopts = context.options().dtype(at_);
  auto pooled = at::empty({d.B, d.Dc}, context.options());
  auto attn = at::empty({d.B, d.H, d.W}, context.options());
  auto lse = at::empty({d.B}, aopts);
  auto hidden = at::empty({0}, aopts);
  if (d.B == 0) return {pooled, attn, lse, hidden};
  auto p = prepare(face, w1, b1, w2, b2, hidden_scale, hidden_shift, d);
  auto state = at::empty({d.B, num_chunks(d.N), d.Dc + 2}, aopts);
  auto scores = at::empty({d.B, d.N}, aopts);
  ForwardOut out{state.data_ptr(), scores.data_ptr(), pooled.data_ptr(), attn.data_ptr(),
                 lse.data_ptr()};
  check_launch(gla_forward_launch(dtype_tag(context.scalar_type()), make_cells(context, d),
                                  make_weights(p, d), out, c10::cuda::getCurrentCUDAStream().stream()),
               "gla_forward kernel");
  lse.add_(p.b2);
  return {pooled, attn, lse, hidden};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
           at::Tensor>
gla_backward_cuda(const c10::optional<at::Tensor>& grad_pooled_in, const c10::optional<at::Tensor>& grad_attn_in,
                  const c10::optional<at::Tensor>& grad_lse_in, const at::Tensor& face, const at::Tensor& context,
                  const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
                  const at::Tensor& b2, const c10::optional<at::Tensor>& hidden_scale,
                  const c10::optional<at::Tensor>& hidden_shift, const at::Tensor& pooled,
                  const at::Tensor& attn, const at::Tensor& lse,
                  const c10::optional<at::Tensor>& hidden, std::array<bool, 8> needs_grad) {
  const auto d = check_gla_args(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift,
                                c10::DeviceType::CUDA);
  TORCH_CHECK(!hidden.has_value() || hidden->numel() == 0,
              "glamor_fast: the CUDA backward recomputes the hidden layer; pass hidden=None");
  check_gla_backward_args(d, grad_pooled_in, grad_attn_in, grad_lse_in, attn, lse);
  c10::cuda::CUDAGuard guard(context.device());
  // A missing output gradient (autograd passes None for an output that got none) is zero.
  auto given_or_zeros = [&](const c10::optional<at::Tensor>& g, at::IntArrayRef size, const at::Tensor& like) {
    return g.has_value() ? *g : at::zeros(size, like.options());
  };
  const at::Tensor grad_pooled = given_or_zeros(grad_pooled_in, {d.B, d.Dc}, context);
  const at::Tensor grad_attn = given_or_zeros(grad_attn_in, {d.B, d.H, d.W}, attn);
  const at::Tensor grad_lse = given_or_zeros(grad_lse_in, {d.B}, lse);
  const bool bn = hidden_scale.has_value();
  const auto st = context.scalar_type();
  const auto at_ = compute_type(st);
  auto aopts = context.options().dtype(at_);
  const bool need_any = std::any_of(needs_grad.begin(), needs_grad.end(), [](bool x) { return x; });
  if (!need_any || d.B == 0) {
    return host::zero_grads(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift, needs_grad);
  }
  auto p = prepare(face, w1, b1, w2, b2, hidden_scale, hidden_shift, d);
  auto gp = grad_pooled.to(at_).contiguous();
  // The softmax's incoming gradient per cell t_i = gp . v_i + ga_i, and from the same values
  // delta = sum_i a_i t_i - g_lse (not gp . pooled: that rounds differently, and ds would not be
  // exactly 0 where it truly is). 16-bit: a is the rounded attn, exactly 0 / 1 where one-hot.
  auto ga = grad_attn.reshape({d.B, d.N}).to(at_);
  auto t = (at::bmm(gp.unsqueeze(1), context.flatten(2).to(at_)).squeeze(1) + ga).contiguous();
  auto delta = ((attn.reshape({d.B, d.N}).to(at_) * t).sum(1) - grad_lse.to(at_)).contiguous();
  auto lse_k = (lse.to(at_) - p.b2).contiguous();  // the kernels' scores exclude b2
  at::Tensor dctx, dz;
  BackwardOut out{nullptr, 0, 0, 0, 0, nullptr, nullptr};
  if (needs_grad[1]) {
    dctx = host::empty_grad_context(context, d, st);  // the kernel writes storage-dtype values
    out.dctx = dctx.data_ptr();
    out.sb = dctx.stride(0);
    out.sc = dctx.stride(1);
    out.sh = dctx.stride(2);
    out.sw = dctx.stride(3);
  }
  if (needs_grad[2]) {
    dz = at::empty({d.B * d.N, d.Hd}, aopts);
    out.dz = dz.data_ptr();
  }
  auto vec = at::empty({d.B, num_chunks(d.N), 4 * d.Hd}, aopts.dtype(at::kDouble));
  out.vec = vec.data_ptr();
  // Where attn is stored in the accumulation type its values are the kernel's probabilities.
  auto probs = st == at_ ? attn.reshape({d.B, d.N}).contiguous() : at::Tensor();
  BackwardIn in{gp.data_ptr(), t.data_ptr(), delta.data_ptr(), lse_k.data_ptr(),
                probs.defined() ? probs.data_ptr() : nullptr};
  check_launch(gla_backward_launch(dtype_tag(st), make_cells(context, d), make_weights(p, d), in,
                                   out, c10::cuda::getCurrentCUDAStream().stream()),
               "gla_backward kernel");
  auto per_b = vec.sum(1);                            // (B, 4 Hd) float64, fixed-order reductions
  auto du = per_b.narrow(1, 3 * d.Hd, d.Hd).to(at_);  // (B, Hd)
  auto totals = per_b.narrow(1, 0, 3 * d.Hd).sum(0).to(at_);
  at::Tensor dW1c;
  if (needs_grad[2]) {
    auto cells = context.permute({0, 2, 3, 1}).reshape({d.B * d.N, d.Dc}).to(at_);
    dW1c = dz.t().mm(cells);
  }
  return host::assemble_grads(face, context, b2, grad_lse, p, d, du, dW1c, dctx,
                              totals.narrow(0, 0, d.Hd).clone(), totals.narrow(0, d.Hd, d.Hd).clone(),
                              totals.narrow(0, 2 * d.Hd, d.Hd).clone(), bn, needs_grad);
}

}  // namespace

TORCH_LIBRARY_IMPL(glamor_fast, CUDA, m) {
  m.impl("gla_forward", &gla_forward_cuda);
  m.impl("gla_backward", &gla_backward_cuda);
}

}  // namespace cuda
}  // namespace glamor_fast
