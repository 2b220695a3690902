// The op schemas of glamor_fast, in one place. Kernels register per dispatch key elsewhere:
// csrc/cpu/gla.cpp (CPU) and csrc/cuda/gla_binding.cpp (CUDA); fake kernels and autograd are
// registered from Python (glamor_fast/ops/_ext.py).
#include <Python.h>
#include <torch/library.h>

// `import glamor_fast._C` loads this shared library, which runs the registrations below.
extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(glamor_fast, m) {
  // pooled (B, Dc) and attn (B, H, W) in the inputs' dtype; lse (B) the log-sum-exp of the
  // scores, float64 for float64 inputs and float32 otherwise (saved for the backward); hidden
  // z = V W1c^T (B, N, Hd) in lse's dtype when save_hidden (and the kernel supports it: CPU),
  // else an empty (0,) tensor.
  m.def(
      "gla_forward(Tensor face, Tensor context, Tensor w1, Tensor b1, Tensor w2, Tensor b2, "
      "Tensor? hidden_scale, Tensor? hidden_shift, bool save_hidden=False) -> "
      "(Tensor pooled, Tensor attn, Tensor lse, Tensor hidden)");
  // Gradients of the 8 inputs given those of (pooled, attn, lse). needs_grad[i] false skips the
  // work of input i and returns an empty (0,) tensor in its place. hidden: the forward's, or
  // None / (0,): recomputed.
  m.def(
      "gla_backward(Tensor grad_pooled, Tensor grad_attn, Tensor grad_lse, Tensor face, "
      "Tensor context, Tensor w1, Tensor b1, Tensor w2, Tensor b2, Tensor? hidden_scale, "
      "Tensor? hidden_shift, Tensor pooled, Tensor attn, Tensor lse, Tensor? hidden, "
      "bool[8] needs_grad) -> "
      "(Tensor grad_face, Tensor grad_context, Tensor grad_w1, Tensor grad_b1, Tensor grad_w2, "
      "Tensor grad_b2, Tensor grad_hidden_scale, Tensor grad_hidden_shift)");
  // Batch statistics of GLA's hidden layer relu(W1 [v_f; v_ij] + b1) over all B*H*W cells, tile
  // by tile (glamor_fast/ops/hidden_stats.py wraps them in the gla_hidden_stats custom op):
  // mean and biased var (Hd) in the inputs' dtype (float32 or float64), summed in float64.
  m.def("gla_hidden_stats_forward(Tensor face, Tensor context, Tensor w1, Tensor b1) -> (Tensor mean, Tensor var)");
  // Given the gradients of (mean, var): dU = dL/du (B, Hd) with u = W1f v_f + b1, dW1c (Hd, Dc)
  // and dcontext (in context's memory format; (0,) unless need_context), in the inputs' dtype;
  // the face / W1f / b1 gradients follow from dU.
  m.def(
      "gla_hidden_stats_backward(Tensor grad_mean, Tensor grad_var, Tensor face, Tensor context, "
      "Tensor w1, Tensor b1, Tensor mean, bool need_context, bool need_w1c) -> "
      "(Tensor grad_u, Tensor grad_w1c, Tensor grad_context)");
  // Fused BatchNorm2d (batch statistics) -> ReLU -> MaxPool2d(2) (csrc/cpu/bn_relu_pool.cpp).
  // y, xp (x at each window's argmax) (N, C, H/2, W/2) in x's dtype, idx uint8 0..3 (row-major
  // in the window), mean and biased var (C) in x's dtype.
  m.def(
      "bn_relu_pool_forward(Tensor x, Tensor weight, Tensor bias, float eps) -> "
      "(Tensor y, Tensor idx, Tensor xp, Tensor mean, Tensor var)");
  // Gradients (x, weight, bias) given grad_y and the forward's saved tensors.
  m.def(
      "bn_relu_pool_backward(Tensor grad_y, Tensor x, Tensor weight, Tensor y, Tensor idx, Tensor xp, "
      "Tensor mean, Tensor var, float eps) -> (Tensor grad_x, Tensor grad_weight, Tensor grad_bias)");
  // ReLU -> MaxPool2d(2) for inference (csrc/cpu/relu_pool.cpp): (N, C, H/2, W/2) in x's memory
  // format, no indices, no autograd (glamor_fast/ops/relu_pool.py routes gradients elsewhere).
  m.def("relu_pool(Tensor x) -> Tensor");
  // The first encoder layer for inference (csrc/cpu/stem_conv.cpp): conv 3x3, stride 1, zero
  // padding 1, Cin <= 4, Cout a multiple of 16, + bias -> ReLU -> MaxPool2d(2); float32;
  // y (N, Cout, H/2, W/2) channels_last. No autograd.
  m.def("stem_conv_relu_pool(Tensor x, Tensor weight, Tensor? bias) -> Tensor");
}
