// The schema of the inference stem conv (maths: docs/stem_conv.md; kernel: cpu/).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(glamor_fast, m) {
  // The first encoder layer for inference: conv 3x3, stride 1, zero padding 1, Cin <= 4, Cout a
  // multiple of 16, + bias -> ReLU -> MaxPool2d(2); float32; y (N, Cout, H/2, W/2)
  // channels_last. No autograd.
  m.def("stem_conv_relu_pool(Tensor x, Tensor weight, Tensor? bias) -> Tensor");
}
