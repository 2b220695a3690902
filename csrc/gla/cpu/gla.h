// The fused CPU kernels of the GLA op (see docs/gla.md for the maths).
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <tuple>

namespace glamor_fast {
namespace cpu {

// face (B, Df), context (B, Dc, H, W) any strides, w1 (Hd, Df + Dc), b1 (Hd), w2 (Hd), b2 scalar,
// hidden_scale / hidden_shift optional (Hd). Returns pooled (B, Dc), attn (B, H, W) in the
// inputs' dtype; lse (B) and hidden in float64 for float64 inputs, float32 otherwise: hidden is
// z = V W1c^T (B, N, Hd) when save_hidden (the backward then skips recomputing it), else (0,).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> gla_forward_cpu(
    const at::Tensor& face, const at::Tensor& context, const at::Tensor& w1, const at::Tensor& b1,
    const at::Tensor& w2, const at::Tensor& b2, const c10::optional<at::Tensor>& hidden_scale,
    const c10::optional<at::Tensor>& hidden_shift, bool save_hidden);

// Gradients of (face, context, w1, b1, w2, b2, hidden_scale, hidden_shift) from those of
// pooled (B, Dc), attn (B, H, W) and lse (B); an entry whose needs_grad is false is an empty (0,)
// tensor. hidden: the forward's saved z, or None / (0,) to recompute it. Deterministic for a
// fixed at::get_num_threads().
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
           at::Tensor>
gla_backward_cpu(const c10::optional<at::Tensor>& grad_pooled, const c10::optional<at::Tensor>& grad_attn,
                 const c10::optional<at::Tensor>& grad_lse, const at::Tensor& face, const at::Tensor& context,
                 const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
                 const at::Tensor& b2, const c10::optional<at::Tensor>& hidden_scale,
                 const c10::optional<at::Tensor>& hidden_shift, const at::Tensor& pooled,
                 const at::Tensor& attn, const at::Tensor& lse,
                 const c10::optional<at::Tensor>& hidden, std::array<bool, 8> needs_grad);

// Batch statistics of the hidden layer relu(W1 [v_f; v_ij] + b1) over all B*H*W cells:
// mean and biased var (Hd), float32 or float64 inputs (glamor_fast/ops/gla/hidden_stats.py).
std::tuple<at::Tensor, at::Tensor> gla_hidden_stats_forward_cpu(const at::Tensor& face, const at::Tensor& context,
                                                                const at::Tensor& w1, const at::Tensor& b1);

// Their backward: dU (B, Hd) = dL/du (u = W1f v_f + b1), dW1c (Hd, Dc), dcontext (or (0,)).
std::tuple<at::Tensor, at::Tensor, at::Tensor> gla_hidden_stats_backward_cpu(
    const at::Tensor& grad_mean, const at::Tensor& grad_var, const at::Tensor& face, const at::Tensor& context,
    const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& mean, bool need_context, bool need_w1c);

}  // namespace cpu
}  // namespace glamor_fast
