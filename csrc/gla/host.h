// Host-side logic shared by the CPU (cpu/gla.cpp) and CUDA (cuda/binding.cpp) implementations
// of glamor_fast::gla_forward / gla_backward, so that both give the op one contract: the compute
// dtype, the small parameters in it, the dcontext layout, the gradients that follow from
// dU = dL/du and dW1c (docs/gla.md B4, B11), and the all-zero result.
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <tuple>

#include "common/layout.h"
#include "gla/checks.h"

namespace glamor_fast {
namespace host {

// float64 stays float64; float32, float16 and bfloat16 compute in float32.
inline at::ScalarType compute_type(at::ScalarType st) { return st == at::kDouble ? at::kDouble : at::kFloat; }

// The small parameters in the compute dtype, contiguous: w1 (Hd, Df + Dc), w1c_t = W1c^T
// (Dc, Hd), w2 (Hd), scale / shift (Hd; undefined without the hidden BatchNorm) and
// u = face W1f^T + b1 (B, Hd), once per batch element.
struct Params {
  at::Tensor w1, w1c_t, w2, scale, shift, u;
};

inline Params prepare_params(const at::Tensor& face, const at::Tensor& w1, const at::Tensor& b1,
                             const at::Tensor& w2, const c10::optional<at::Tensor>& scale,
                             const c10::optional<at::Tensor>& shift, const GlaDims& d) {
  const auto ct = compute_type(w1.scalar_type());
  Params p;
  p.w1 = w1.to(ct).contiguous();
  p.w1c_t = p.w1.narrow(1, d.Df, d.Dc).t().contiguous();
  p.w2 = w2.to(ct).contiguous();
  if (scale.has_value()) {
    p.scale = scale->to(ct).contiguous();
    p.shift = shift->to(ct).contiguous();
  }
  p.u = at::addmm(b1.to(ct), face.to(ct), p.w1.narrow(1, 0, d.Df).t()).contiguous();
  return p;
}

// dcontext (B, Dc, H, W) of dtype ``dtype`` (what the kernel writes), channels_last when context
// is, so the kernels write it directly. Decided on the caller's tensor: the Python fake kernel
// sees only that.
inline at::Tensor empty_grad_context(const at::Tensor& context, const GlaDims& d, at::ScalarType dtype) {
  const bool cl = is_channels_last(context);
  return at::empty({d.B, d.Dc, d.H, d.W},
                   context.options().dtype(dtype).memory_format(cl ? at::MemoryFormat::ChannelsLast
                                                                   : at::MemoryFormat::Contiguous));
}

using Grads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                         at::Tensor>;

// Zeros for every gradient asked for (empty (0,) tensors elsewhere): nothing is asked, or B = 0.
inline Grads zero_grads(const at::Tensor& face, const at::Tensor& context, const at::Tensor& w1,
                        const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2,
                        const c10::optional<at::Tensor>& scale, const c10::optional<at::Tensor>& shift,
                        const std::array<bool, 8>& needs) {
  auto none = [&] { return at::empty({0}, context.options()); };
  auto z = [&](const at::Tensor& t, bool n) { return n ? at::zeros_like(t) : none(); };
  const bool bn = scale.has_value();
  return {z(face, needs[0]), z(context, needs[1]), z(w1, needs[2]), z(b1, needs[3]), z(w2, needs[4]),
          z(b2, needs[5]), bn ? z(*scale, needs[6]) : none(), bn ? z(*shift, needs[7]) : none()};
}

// The op's gradients in the input dtype (empty (0,) where not asked for), from what the kernels
// produced in the compute dtype: dU (B, Hd) = dL/du, dW1c (Hd, Dc), dcontext, and the per-unit
// sums dw2, dgamma, dbeta (Hd). dface = dU W1f, dW1 = [dU^T face, dW1c], db1 = sum_b dU,
// db2 = sum_b g_lse (scores are shift invariant inside the softmax); "+ 0 * sum(dU)" keeps db2
// non-finite where the other gradients are, as PyTorch's would be.
inline Grads assemble_grads(const at::Tensor& face, const at::Tensor& context, const at::Tensor& b2,
                            const at::Tensor& grad_lse, const Params& p, const GlaDims& d, const at::Tensor& dU,
                            const at::Tensor& dW1c, const at::Tensor& dctx, const at::Tensor& dw2,
                            const at::Tensor& dgamma, const at::Tensor& dbeta, bool bn,
                            const std::array<bool, 8>& needs) {
  const auto st = context.scalar_type();
  const auto ct = compute_type(st);
  auto none = [&] { return at::empty({0}, context.options()); };
  auto out = [&](const at::Tensor& t, bool n) { return n ? t.to(st) : none(); };
  return {needs[0] ? dU.mm(p.w1.narrow(1, 0, d.Df)).to(st) : none(),
          out(dctx, needs[1]),
          needs[2] ? at::cat({dU.t().mm(face.to(ct)), dW1c}, 1).to(st) : none(),
          needs[3] ? dU.sum(0).to(st) : none(),
          out(dw2, needs[4]),
          needs[5] ? (grad_lse.to(ct).sum() + dU.sum() * 0).reshape(b2.sizes()).to(st) : none(),
          bn ? out(dgamma, needs[6]) : none(),
          bn ? out(dbeta, needs[7]) : none()};
}

}  // namespace host
}  // namespace glamor_fast
