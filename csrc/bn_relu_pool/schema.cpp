// The schemas of the fused encoder block BatchNorm2d -> ReLU -> MaxPool2d(2) (maths:
// docs/bn_relu_pool.md; kernels: cpu/).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(glamor_fast, m) {
  // Fused BatchNorm2d (batch statistics) -> ReLU -> MaxPool2d(2).
  // y, xp (x at each window's argmax) (N, C, H/2, W/2) in x's dtype, idx uint8 0..3 (row-major
  // in the window), mean and biased var (C) in x's dtype.
  m.def(
      "bn_relu_pool_forward(Tensor x, Tensor weight, Tensor bias, float eps) -> "
      "(Tensor y, Tensor idx, Tensor xp, Tensor mean, Tensor var)");
  // Gradients (x, weight, bias) given grad_y and the forward's saved tensors.
  m.def(
      "bn_relu_pool_backward(Tensor grad_y, Tensor x, Tensor weight, Tensor y, Tensor idx, Tensor xp, "
      "Tensor mean, Tensor var, float eps) -> (Tensor grad_x, Tensor grad_weight, Tensor grad_bias)");
}
