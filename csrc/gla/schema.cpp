// The schemas of the GLA op (gla_forward / gla_backward) and of its hidden layer's batch
// statistics (gla_hidden_stats_forward / _backward). Maths: docs/gla.md; kernels: cpu/ (CPU),
// cuda/ (CUDA).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(glamor_fast, m) {
  // pooled (B, Dc) and attn (B, H, W) in the inputs' dtype; lse (B) the log-sum-exp of the
  // scores, float64 for float64 inputs and float32 otherwise (saved for the backward); hidden
  // z = V W1c^T (B, N, Hd) in lse's dtype when save_hidden (and the kernel supports it: CPU),
  // else an empty (0,) tensor.
  m.def(
      "gla_forward(Tensor face, Tensor context, Tensor w1, Tensor b1, Tensor w2, Tensor b2, "
      "Tensor? hidden_scale, Tensor? hidden_shift, bool save_hidden=False) -> "
      "(Tensor pooled, Tensor attn, Tensor lse, Tensor hidden)");
  // Gradients of the 8 inputs given those of (pooled, attn, lse), each optional (None: zero).
  // needs_grad[i] false skips the work of input i and returns an empty (0,) tensor in its
  // place. hidden: the forward's, or None / (0,): recomputed.
  m.def(
      "gla_backward(Tensor? grad_pooled, Tensor? grad_attn, Tensor? grad_lse, Tensor face, "
      "Tensor context, Tensor w1, Tensor b1, Tensor w2, Tensor b2, Tensor? hidden_scale, "
      "Tensor? hidden_shift, Tensor pooled, Tensor attn, Tensor lse, Tensor? hidden, "
      "bool[8] needs_grad) -> "
      "(Tensor grad_face, Tensor grad_context, Tensor grad_w1, Tensor grad_b1, Tensor grad_w2, "
      "Tensor grad_b2, Tensor grad_hidden_scale, Tensor grad_hidden_shift)");
  // Batch statistics of GLA's hidden layer relu(W1 [v_f; v_ij] + b1) over all B*H*W cells, tile
  // by tile (glamor_fast/ops/gla/hidden_stats.py wraps them in the gla_hidden_stats custom op):
  // mean and biased var (Hd) in the inputs' dtype (float32 or float64), summed in float64.
  m.def("gla_hidden_stats_forward(Tensor face, Tensor context, Tensor w1, Tensor b1) -> (Tensor mean, Tensor var)");
  // Given the gradients of (mean, var): dU = dL/du (B, Hd) with u = W1f v_f + b1, dW1c (Hd, Dc)
  // and dcontext (in context's memory format; (0,) unless need_context), in the inputs' dtype;
  // the face / W1f / b1 gradients follow from dU.
  m.def(
      "gla_hidden_stats_backward(Tensor grad_mean, Tensor grad_var, Tensor face, Tensor context, "
      "Tensor w1, Tensor b1, Tensor mean, bool need_context, bool need_w1c) -> "
      "(Tensor grad_u, Tensor grad_w1c, Tensor grad_context)");
}
