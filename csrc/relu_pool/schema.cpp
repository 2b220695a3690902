// The schema of the inference ReLU -> MaxPool2d(2) (maths: docs/relu_pool.md; kernel: cpu/).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(glamor_fast, m) {
  // ReLU -> MaxPool2d(2) for inference: (N, C, H/2, W/2) in x's memory format, no indices, no
  // autograd (glamor_fast/ops/relu_pool/ routes gradients elsewhere).
  m.def("relu_pool(Tensor x) -> Tensor");
}
