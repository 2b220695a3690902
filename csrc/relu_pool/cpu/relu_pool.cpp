// ReLU -> MaxPool2d(2) for inference (no indices), CPU kernels (docs/relu_pool.md).
//
// Maths: y[n, c, i, j] = relu(max(x[n, c, 2i + a, 2j + b] for a, b in {0, 1})), H and W floored
// to even; relu(max(.)) = max(relu(.)), so the ReLU runs on the quarter-size output. A NaN in a
// window gives NaN, as F.max_pool2d(F.relu(x), 2) does.
// After BatchNorm is folded into the conv this is all that is left of an encoder block: one read
// of x and one write of y, where the literal ops make two passes (in-place ReLU, then the pool)
// and also write an int64 index per output.
// Layouts: channels_last (vectorised over C) and contiguous NCHW (per plane), each native.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>

#include "common/layout.h"
#include "common/vec_common.h"

namespace {

using glamor_fast::cpu::nan_max;
using glamor_fast::cpu::relu_of;


// One output row, channels_last: x0/x1 the two input rows (W*C each), y the output row (OW*C).
template <typename T>
GLAMOR_CPU_INLINE void row_cl(const T* __restrict__ x0, const T* __restrict__ x1, int64_t OW, int64_t C,
                      T* __restrict__ y) {
  for (int64_t ow = 0; ow < OW; ++ow) {
    const T* a0 = x0 + 2 * ow * C;
    const T* a1 = a0 + C;
    const T* b0 = x1 + 2 * ow * C;
    const T* b1 = b0 + C;
    T* yo = y + ow * C;
#pragma GCC ivdep
    for (int64_t c = 0; c < C; ++c) yo[c] = relu_of(nan_max(nan_max(nan_max(a0[c], a1[c]), b0[c]), b1[c]));
  }
}

// One output row, NCHW: x0/x1 two input rows (W each) of one plane, y the output row (OW).
template <typename T>
GLAMOR_CPU_INLINE void row_nchw(const T* __restrict__ x0, const T* __restrict__ x1, int64_t OW, T* __restrict__ y) {
  for (int64_t ow = 0; ow < OW; ++ow) {
    y[ow] = relu_of(nan_max(nan_max(nan_max(x0[2 * ow], x0[2 * ow + 1]), x1[2 * ow]), x1[2 * ow + 1]));
  }
}

GLAMOR_CPU_CLONES void row_cl_f(const float* x0, const float* x1, int64_t OW, int64_t C, float* y) { row_cl(x0, x1, OW, C, y); }
GLAMOR_CPU_CLONES void row_cl_d(const double* x0, const double* x1, int64_t OW, int64_t C, double* y) { row_cl(x0, x1, OW, C, y); }
GLAMOR_CPU_CLONES void row_nchw_f(const float* x0, const float* x1, int64_t OW, float* y) { row_nchw(x0, x1, OW, y); }
GLAMOR_CPU_CLONES void row_nchw_d(const double* x0, const double* x1, int64_t OW, double* y) { row_nchw(x0, x1, OW, y); }
void row_cl_any(const float* x0, const float* x1, int64_t OW, int64_t C, float* y) { row_cl_f(x0, x1, OW, C, y); }
void row_cl_any(const double* x0, const double* x1, int64_t OW, int64_t C, double* y) { row_cl_d(x0, x1, OW, C, y); }
void row_nchw_any(const float* x0, const float* x1, int64_t OW, float* y) { row_nchw_f(x0, x1, OW, y); }
void row_nchw_any(const double* x0, const double* x1, int64_t OW, double* y) { row_nchw_d(x0, x1, OW, y); }

at::Tensor relu_pool_cpu(const at::Tensor& x_in) {
  TORCH_CHECK(x_in.dim() == 4, "relu_pool: x must be (N, C, H, W), got ", x_in.sizes());
  TORCH_CHECK(x_in.scalar_type() == at::kFloat || x_in.scalar_type() == at::kDouble,
              "relu_pool: the CPU kernel takes float32 or float64, got ", x_in.scalar_type());
  TORCH_CHECK(x_in.size(2) >= 2 && x_in.size(3) >= 2, "relu_pool: H and W must be >= 2, got ", x_in.sizes());
  const int64_t N = x_in.size(0), C = x_in.size(1), H = x_in.size(2), W = x_in.size(3);
  const int64_t OH = H / 2, OW = W / 2;
  const bool cl = glamor_fast::is_channels_last(x_in);
  const auto fmt = cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const at::Tensor x = x_in.contiguous(fmt);
  at::Tensor y = at::empty({N, C, OH, OW}, x.options().memory_format(fmt));
  if (y.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "relu_pool", [&] {
    const scalar_t* xd = x.const_data_ptr<scalar_t>();
    scalar_t* yd = y.data_ptr<scalar_t>();
    if (cl) {
      at::parallel_for(0, N * OH, 1, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t n = r / OH, oh = r % OH;
          const scalar_t* x0 = xd + (n * H + 2 * oh) * W * C;
          row_cl_any(x0, x0 + W * C, OW, C, yd + r * OW * C);
        }
      });
    } else {
      at::parallel_for(0, N * C * OH, 16, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t plane = r / OH, oh = r % OH;
          const scalar_t* x0 = xd + (plane * H + 2 * oh) * W;
          row_nchw_any(x0, x0 + W, OW, yd + r * OW);
        }
      });
    }
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(glamor_fast, CPU, m) { m.impl("relu_pool", &relu_pool_cpu); }
