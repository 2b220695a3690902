// The encoders' first layer for inference: conv 3x3 (stride 1, zero padding 1) over an image
// with few channels (Cin <= 4), + bias, ReLU, MaxPool2d(2), in one pass. CPU float32
// (docs/stem_conv.md).
//
// Maths: y[n, o, i, j] = relu(max over a, b in {0, 1} of
//          bias[o] + sum_{ky, kx, c} w[o, c, ky, kx] * x[n, c, 2i + a + ky - 1, 2j + b + kx - 1])
// (x zero outside the image; H, W floored to even for the pool; a NaN propagates).
// Why: with Cin = 3 a conv has 27 multiply-adds per output, too few for oneDNN's blocked
// kernels (measured at ~50 GFLOP/s against ~370 for the later layers, bench/RESULTS.md), and
// its (N, Cout, H, W) output is the largest tensor of the network. Here each output pixel is 27
// broadcast FMAs into Cout accumulators (vectorised over Cout), and only the pooled quarter is
// written.
// Layout: x is read through a zero-padded NHWC copy (small: Cin channels); y is channels_last.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>

#include "common/vec_common.h"

namespace {

using glamor_fast::cpu::nan_max;
using glamor_fast::cpu::relu_of;


// One pooled output row: OW windows x CO output channels of one group. For each window the four
// pixels' accumulators a[q][o] = bias[o] + patch_q . wk[:, o] live in registers (every loop
// bound is a compile-time constant), each weight vector is loaded once for the four pixels.
// xp: padded NHWC rows 2*oh.. (rs = row stride); wk (9 * CI, CO) = [ky][kx][c][o].
template <int CI, int CO>
GLAMOR_CPU_INLINE void pooled_row(const float* __restrict__ xp, int64_t rs, const float* __restrict__ wk,
                          const float* __restrict__ bias, int64_t OW, float* __restrict__ y, int64_t y_pixel_stride) {
  for (int64_t ow = 0; ow < OW; ++ow) {
    const float* p = xp + 2 * ow * CI;
    float a0[CO], a1[CO], a2[CO], a3[CO];
    for (int o = 0; o < CO; ++o) a0[o] = a1[o] = a2[o] = a3[o] = bias[o];
    // Fully unrolled: otherwise gcc keeps the accumulators on the stack between taps.
#pragma GCC unroll 3
    for (int ky = 0; ky < 3; ++ky) {
#pragma GCC unroll 3
      for (int kx = 0; kx < 3; ++kx) {
#pragma GCC unroll 4
        for (int c = 0; c < CI; ++c) {
          const float* px = p + ky * rs + kx * CI + c;
          const float v0 = px[0], v1 = px[CI], v2 = px[rs], v3 = px[rs + CI];
          const float* wc = wk + ((ky * 3 + kx) * CI + c) * CO;
          for (int o = 0; o < CO; ++o) {
            a0[o] += v0 * wc[o];
            a1[o] += v1 * wc[o];
            a2[o] += v2 * wc[o];
            a3[o] += v3 * wc[o];
          }
        }
      }
    }
    float* yo = y + ow * y_pixel_stride;
    for (int o = 0; o < CO; ++o) yo[o] = relu_of(nan_max(nan_max(nan_max(a0[o], a1[o]), a2[o]), a3[o]));
  }
}

constexpr int kGroup = 16;  // output channels per AVX-512 vector

using RowFn = void (*)(const float*, int64_t, const float*, const float*, int64_t, float*, int64_t);

#define SC_ROW(CI, CO)                                                                                    \
  GLAMOR_CPU_CLONES void pooled_row_##CI##_##CO(const float* xp, int64_t rs, const float* wk, const float* bias, \
                                         int64_t OW, float* y, int64_t s) {                              \
    pooled_row<CI, CO>(xp, rs, wk, bias, OW, y, s);                                                       \
  }
SC_ROW(1, 16) SC_ROW(1, 32) SC_ROW(2, 16) SC_ROW(2, 32) SC_ROW(3, 16) SC_ROW(3, 32) SC_ROW(4, 16) SC_ROW(4, 32)
#undef SC_ROW

RowFn row_kernel(int64_t ci, int64_t co) {
  static const RowFn table[4][2] = {{pooled_row_1_16, pooled_row_1_32}, {pooled_row_2_16, pooled_row_2_32},
                                    {pooled_row_3_16, pooled_row_3_32}, {pooled_row_4_16, pooled_row_4_32}};
  return table[ci - 1][co == 2 * kGroup ? 1 : 0];
}

at::Tensor stem_conv_relu_pool_cpu(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias) {
  TORCH_CHECK(x.dim() == 4 && weight.dim() == 4, "stem_conv_relu_pool: x must be (N, Cin, H, W) and weight "
              "(Cout, Cin, 3, 3), got ", x.sizes(), " and ", weight.sizes());
  const int64_t N = x.size(0), Cin = x.size(1), H = x.size(2), W = x.size(3), Cout = weight.size(0);
  TORCH_CHECK(weight.size(1) == Cin && weight.size(2) == 3 && weight.size(3) == 3,
              "stem_conv_relu_pool: weight must be (Cout, ", Cin, ", 3, 3), got ", weight.sizes());
  TORCH_CHECK(Cin >= 1 && Cin <= 4, "stem_conv_relu_pool: Cin must be 1..4, got ", Cin);
  TORCH_CHECK(Cout % kGroup == 0, "stem_conv_relu_pool: Cout must be a multiple of ", kGroup, ", got ", Cout);
  TORCH_CHECK(H >= 2 && W >= 2, "stem_conv_relu_pool: H and W must be >= 2, got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat,
              "stem_conv_relu_pool: float32 only, got ", x.scalar_type(), " and ", weight.scalar_type());
  TORCH_CHECK(!bias.has_value() || (bias->dim() == 1 && bias->size(0) == Cout && bias->scalar_type() == at::kFloat),
              "stem_conv_relu_pool: bias must be float32 (", Cout, ")");
  const int64_t OH = H / 2, OW = W / 2;
  at::Tensor y = at::empty({N, Cout, OH, OW}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (y.numel() == 0) return y;
  // Only rows/columns 0..2*OH, 0..2*OW (+1 halo) are read: the padded copy keeps H + 2 rows anyway.
  at::Tensor xp = at::zeros({N, H + 2, W + 2, Cin}, x.options());
  xp.narrow(1, 1, H).narrow(2, 1, W).copy_(x.permute({0, 2, 3, 1}));
  // Output channels in groups of G = 32 (two AVX-512 vectors of accumulators) or 16; wk holds
  // each group's weights as (9 * Cin, G): [ky][kx][c][o].
  const int64_t G = Cout % (2 * kGroup) == 0 ? 2 * kGroup : kGroup;
  const at::Tensor wk = weight.permute({2, 3, 1, 0}).reshape({9 * Cin, Cout / G, G}).permute({1, 0, 2}).contiguous();
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::zeros({Cout}, x.options());
  const float* xpd = xp.const_data_ptr<float>();
  const float* wkd = wk.const_data_ptr<float>();
  const float* bd = b.const_data_ptr<float>();
  float* yd = y.data_ptr<float>();
  const int64_t rs = (W + 2) * Cin;
  const RowFn row = row_kernel(Cin, G);
  at::parallel_for(0, N * OH, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / OH, oh = r % OH;
      const float* xrow = xpd + (n * (H + 2) + 2 * oh) * rs;
      float* yrow = yd + r * OW * Cout;
      for (int64_t g = 0; g < Cout / G; ++g)
        row(xrow, rs, wkd + g * 9 * Cin * G, bd + g * G, OW, yrow + g * G, Cout);
    }
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(glamor_fast, CPU, m) { m.impl("stem_conv_relu_pool", &stem_conv_relu_pool_cpu); }
