// Fused encoder block BatchNorm2d (training statistics) -> ReLU -> MaxPool2d(2), CPU kernels
// (docs/bn_relu_pool.md).
//
// Maths (per channel c, n = N*H*W values):
//   mean = sum(x)/n, var = sum((x-mean)^2)/n (biased), invstd = 1/sqrt(var+eps)
//   z = (x-mean)*invstd*gamma + beta, r = relu(z), y = maxpool2x2(r) (floored, first max wins,
//   a NaN wins over numbers and a later NaN over an earlier one, as at::max_pool2d on the CPU).
// Backward: dz is non-zero only at each window's argmax p, where dz_p = dy * !(y <= 0)
//   (threshold_backward on the ReLU output), so BN's two reductions run over pooled elements:
//   dbeta = sum(dz_p), dgamma = sum(dz_p * xhat_p); then one pass over x writes
//   dx = gamma*invstd*(dz - dbeta/n - xhat*dgamma/n).
// Traffic: forward reads x twice and writes y, xp (x at the argmax) and idx (uint8 0..3) at a
// quarter size; backward reads pooled tensors, then x once and writes dx.
//
// Layout: kernels run on channels_last data (C contiguous, vectorised over C). Contiguous (NCHW)
// inputs are converted on entry and outputs converted back: correct, not fast.
// Reductions use fixed row chunks (blocks of 32 rows summed in the input type, then float64
// totals), so results do not depend on the thread count.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common/layout.h"
#include "common/vec_common.h"

namespace {


constexpr int64_t kChunks = 64;  // fixed reduction chunks: deterministic for any thread count


at::Tensor to_cl(const at::Tensor& t) { return t.contiguous(at::MemoryFormat::ChannelsLast); }

// ---- inner loops over one row of C channels ------------------------------------------------

// Per-channel sums over rows, in blocks of kBlockRows rows summed in T, each block's sums added
// to the float64 totals s1, s2 (C each). row(r, a1, a2) adds row r's terms to a1, a2. All-T inner
// loops vectorise; mixed float/double arithmetic ran scalar (the backward reduction took 7.7 ms
// for (32, 32, 56, 56) pooled tensors on one thread, 4x the bytes' time; now ~2 ms).
constexpr int64_t kBlockRows = 32;

template <typename T, typename RowFn>
GLAMOR_CPU_INLINE void blocked_sums(int64_t rows, int64_t C, double* __restrict__ s1, double* __restrict__ s2, RowFn row) {
  std::vector<T> b1(C), b2(C);
  for (int64_t r0 = 0; r0 < rows; r0 += kBlockRows) {
    std::fill(b1.begin(), b1.end(), T(0));
    std::fill(b2.begin(), b2.end(), T(0));
    for (int64_t r = r0; r < std::min(rows, r0 + kBlockRows); ++r) row(r, b1.data(), b2.data());
    for (int64_t c = 0; c < C; ++c) {
      s1[c] += double(b1[c]);
      s2[c] += double(b2[c]);
    }
  }
}

// sum(x - shift), sum((x - shift)^2) per channel.
template <typename T>
GLAMOR_CPU_INLINE void stats_rows(const T* __restrict__ x, int64_t rows, int64_t C, const double* __restrict__ shift,
                           double* __restrict__ s, double* __restrict__ q) {
  std::vector<T> sh(C);
  for (int64_t c = 0; c < C; ++c) sh[c] = T(shift[c]);
  const T* __restrict__ shf = sh.data();
  blocked_sums<T>(rows, C, s, q, [&](int64_t r, T* __restrict__ a1, T* __restrict__ a2) {
    const T* xr = x + r * C;
#pragma GCC ivdep
    for (int64_t c = 0; c < C; ++c) {
      const T d = xr[c] - shf[c];
      a1[c] += d;
      a2[c] += d * d;
    }
  });
}

GLAMOR_CPU_CLONES void stats_rows_f(const float* x, int64_t rows, int64_t C, const double* shift, double* s,
                             double* q) {
  stats_rows(x, rows, C, shift, s, q);
}
GLAMOR_CPU_CLONES void stats_rows_d(const double* x, int64_t rows, int64_t C, const double* shift, double* s,
                             double* q) {
  stats_rows(x, rows, C, shift, s, q);
}
void stats_rows_any(const float* x, int64_t r, int64_t C, const double* sh, double* s, double* q) {
  stats_rows_f(x, r, C, sh, s, q);
}
void stats_rows_any(const double* x, int64_t r, int64_t C, const double* sh, double* s, double* q) {
  stats_rows_d(x, r, C, sh, s, q);
}

// One pooled row: x rows (2*oh, 2*oh+1) of width W -> OW pooled pixels.
template <typename T>
GLAMOR_CPU_INLINE T bn_relu(T x, T mean, T scale, T beta) {
  T z = (x - mean) * scale + beta;
  return z < T(0) ? T(0) : z;  // relu; NaN stays NaN
}

// Window element k replaces the running max when larger or NaN (at::max_pool2d's rule).
template <typename T>
GLAMOR_CPU_INLINE void pool_take(T xk, uint8_t k, T m, T s, T be, T& best, T& bx, uint8_t& bi) {
  const T rk = bn_relu(xk, m, s, be);
  const bool take = glamor_fast::cpu::max_takes(best, rk);
  best = take ? rk : best;
  bx = take ? xk : bx;
  bi = take ? k : bi;
}

template <typename T>
GLAMOR_CPU_INLINE void pool_row(const T* __restrict__ x0, const T* __restrict__ x1, int64_t OW, int64_t C,
                         const T* __restrict__ mean, const T* __restrict__ scale, const T* __restrict__ beta,
                         T* __restrict__ y, T* __restrict__ xp, uint8_t* __restrict__ idx) {
  for (int64_t ow = 0; ow < OW; ++ow) {
    const T* __restrict__ a0 = x0 + 2 * ow * C;
    const T* __restrict__ a1 = a0 + C;
    const T* __restrict__ b0 = x1 + 2 * ow * C;
    const T* __restrict__ b1 = b0 + C;
    T* __restrict__ yo = y + ow * C;
    T* __restrict__ xo = xp + ow * C;
    uint8_t* __restrict__ io = idx + ow * C;
#pragma GCC ivdep
    for (int64_t c = 0; c < C; ++c) {
      const T m = mean[c], s = scale[c], be = beta[c];
      T bx = a0[c];
      T best = bn_relu(bx, m, s, be);
      uint8_t bi = 0;
      pool_take(a1[c], uint8_t(1), m, s, be, best, bx, bi);
      pool_take(b0[c], uint8_t(2), m, s, be, best, bx, bi);
      pool_take(b1[c], uint8_t(3), m, s, be, best, bx, bi);
      yo[c] = best;
      xo[c] = bx;
      io[c] = bi;
    }
  }
}

GLAMOR_CPU_CLONES void pool_row_f(const float* x0, const float* x1, int64_t OW, int64_t C, const float* m,
                           const float* s, const float* b, float* y, float* xp, uint8_t* idx) {
  pool_row(x0, x1, OW, C, m, s, b, y, xp, idx);
}
GLAMOR_CPU_CLONES void pool_row_d(const double* x0, const double* x1, int64_t OW, int64_t C, const double* m,
                           const double* s, const double* b, double* y, double* xp, uint8_t* idx) {
  pool_row(x0, x1, OW, C, m, s, b, y, xp, idx);
}
void pool_row_any(const float* x0, const float* x1, int64_t OW, int64_t C, const float* m, const float* s,
                  const float* b, float* y, float* xp, uint8_t* idx) {
  pool_row_f(x0, x1, OW, C, m, s, b, y, xp, idx);
}
void pool_row_any(const double* x0, const double* x1, int64_t OW, int64_t C, const double* m,
                  const double* s, const double* b, double* y, double* xp, uint8_t* idx) {
  pool_row_d(x0, x1, OW, C, m, s, b, y, xp, idx);
}

// Backward reduction over pooled pixels: s1 += dz, s2 += dz*(xp-mean).
template <typename T>
GLAMOR_CPU_INLINE void bwd_reduce_rows(const T* __restrict__ dy, const T* __restrict__ y, const T* __restrict__ xp,
                                int64_t rows, int64_t C, const T* __restrict__ mean, double* __restrict__ s1,
                                double* __restrict__ s2) {
  blocked_sums<T>(rows, C, s1, s2, [&](int64_t r, T* __restrict__ a1, T* __restrict__ a2) {
    const T* d = dy + r * C;
    const T* yy = y + r * C;
    const T* xx = xp + r * C;
#pragma GCC ivdep
    for (int64_t c = 0; c < C; ++c) {
      const T dv = d[c];  // loaded unconditionally: a select, not a branch
      const T dz = yy[c] <= T(0) ? T(0) : dv;
      a1[c] += dz;
      a2[c] += dz * (xx[c] - mean[c]);
    }
  });
}

GLAMOR_CPU_CLONES void bwd_reduce_f(const float* dy, const float* y, const float* xp, int64_t rows, int64_t C,
                             const float* mean, double* s1, double* s2) {
  bwd_reduce_rows(dy, y, xp, rows, C, mean, s1, s2);
}
GLAMOR_CPU_CLONES void bwd_reduce_d(const double* dy, const double* y, const double* xp, int64_t rows, int64_t C,
                             const double* mean, double* s1, double* s2) {
  bwd_reduce_rows(dy, y, xp, rows, C, mean, s1, s2);
}
void bwd_reduce_any(const float* dy, const float* y, const float* xp, int64_t rows, int64_t C,
                    const float* mean, double* s1, double* s2) {
  bwd_reduce_f(dy, y, xp, rows, C, mean, s1, s2);
}
void bwd_reduce_any(const double* dy, const double* y, const double* xp, int64_t rows, int64_t C,
                    const double* mean, double* s1, double* s2) {
  bwd_reduce_d(dy, y, xp, rows, C, mean, s1, s2);
}

// dx = a*dz + b - c1*(x - mean), per channel.
template <typename T>
struct DxCoef {
  const T* mean;
  const T* a;
  const T* b;
  const T* c1;
};

// dx of pixels outside every window (a floored-off last row or column): dz = 0.
template <typename T>
GLAMOR_CPU_INLINE void bwd_dx_plain(const T* __restrict__ x, T* __restrict__ dx, int64_t C, DxCoef<T> k) {
#pragma GCC ivdep
  for (int64_t c = 0; c < C; ++c) dx[c] = k.b[c] - k.c1[c] * (x[c] - k.mean[c]);
}

// dx of input rows 2*oh and 2*oh+1 (x0/d0, x1/d1: W pixels of C) from pooled row oh (OW pixels):
// each window's dy, y and idx are read once for its four pixels.
template <typename T>
GLAMOR_CPU_INLINE void bwd_dx_rows(const T* __restrict__ x0, const T* __restrict__ x1, T* __restrict__ d0,
                            T* __restrict__ d1, int64_t W, int64_t OW, int64_t C, const T* __restrict__ dy,
                            const T* __restrict__ y, const uint8_t* __restrict__ idx, DxCoef<T> k) {
  const T* __restrict__ mean = k.mean;
  const T* __restrict__ a = k.a;
  const T* __restrict__ b = k.b;
  const T* __restrict__ c1 = k.c1;
  for (int64_t ow = 0; ow < OW; ++ow) {
    const int64_t o = ow * C, i = 2 * ow * C;
#pragma GCC ivdep
    for (int64_t c = 0; c < C; ++c) {
      const T az = y[o + c] <= T(0) ? T(0) : a[c] * dy[o + c];
      const uint8_t w = idx[o + c];
      d0[i + c] = b[c] - c1[c] * (x0[i + c] - mean[c]) + (w == 0 ? az : T(0));
      d0[i + C + c] = b[c] - c1[c] * (x0[i + C + c] - mean[c]) + (w == 1 ? az : T(0));
      d1[i + c] = b[c] - c1[c] * (x1[i + c] - mean[c]) + (w == 2 ? az : T(0));
      d1[i + C + c] = b[c] - c1[c] * (x1[i + C + c] - mean[c]) + (w == 3 ? az : T(0));
    }
  }
  if (W > 2 * OW) {
    bwd_dx_plain(x0 + 2 * OW * C, d0 + 2 * OW * C, C, k);
    bwd_dx_plain(x1 + 2 * OW * C, d1 + 2 * OW * C, C, k);
  }
}

#define BRP_DX_CLONE(T, NAME)                                                                              \
  GLAMOR_CPU_CLONES void NAME(const T* x0, const T* x1, T* d0, T* d1, int64_t W, int64_t OW, int64_t C,           \
                       const T* dy, const T* y, const uint8_t* idx, DxCoef<T> k) {                         \
    bwd_dx_rows(x0, x1, d0, d1, W, OW, C, dy, y, idx, k);                                                  \
  }                                                                                                        \
  void bwd_dx_rows_any(const T* x0, const T* x1, T* d0, T* d1, int64_t W, int64_t OW, int64_t C,           \
                       const T* dy, const T* y, const uint8_t* idx, DxCoef<T> k) {                         \
    NAME(x0, x1, d0, d1, W, OW, C, dy, y, idx, k);                                                         \
  }
BRP_DX_CLONE(float, bwd_dx_rows_f)
BRP_DX_CLONE(double, bwd_dx_rows_d)

// Deterministic chunked reduction over `rows` rows of C: fn(row0, nrows, acc1, acc2) per chunk,
// chunks summed in order into out1/out2 (float64, length C).
template <typename F>
void chunked_reduce(int64_t rows, int64_t C, std::vector<double>& out1, std::vector<double>& out2, F fn) {
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(kChunks, rows));
  const int64_t per = (rows + chunks - 1) / chunks;
  std::vector<double> part(size_t(chunks) * 2 * C, 0.0);
  at::parallel_for(0, chunks, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      int64_t r0 = k * per, r1 = std::min(rows, r0 + per);
      if (r0 >= r1) continue;
      double* p = part.data() + k * 2 * C;
      fn(r0, r1 - r0, p, p + C);
    }
  });
  out1.assign(C, 0.0);
  out2.assign(C, 0.0);
  for (int64_t k = 0; k < chunks; ++k) {
    const double* p = part.data() + k * 2 * C;
    for (int64_t c = 0; c < C; ++c) {
      out1[c] += p[c];
      out2[c] += p[C + c];
    }
  }
}

void check_inputs(const char* fn, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  TORCH_CHECK(x.device().is_cpu(), fn, ": x must be a CPU tensor, got ", x.device());
  TORCH_CHECK(x.dim() == 4, fn, ": x must be (N, C, H, W), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, fn,
              ": x must be float32 or float64, got ", x.scalar_type());
  const int64_t C = x.size(1);
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == C && bias.dim() == 1 && bias.size(0) == C, fn,
              ": weight and bias must be (", C, ",), got ", weight.sizes(), " and ", bias.sizes());
  TORCH_CHECK(weight.scalar_type() == x.scalar_type() && bias.scalar_type() == x.scalar_type(), fn,
              ": weight, bias and x must share a dtype");
  TORCH_CHECK(x.size(2) >= 2 && x.size(3) >= 2, fn, ": H and W must be >= 2 for a 2x2 pool, got ",
              x.sizes());
  TORCH_CHECK(x.size(0) * x.size(2) * x.size(3) > 1, fn,
              ": expected more than 1 value per channel when training, got ", x.sizes());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> bn_relu_pool_forward_cpu(
    const at::Tensor& x_in, const at::Tensor& weight_in, const at::Tensor& bias_in, double eps) {
  check_inputs("bn_relu_pool_forward", x_in, weight_in, bias_in);
  const bool cl = glamor_fast::is_channels_last(x_in);
  const at::Tensor x = to_cl(x_in);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t OH = H / 2, OW = W / 2;
  const auto opts = x.options();
  at::Tensor y = at::empty({N, C, OH, OW}, opts.memory_format(at::MemoryFormat::ChannelsLast));
  at::Tensor xp = at::empty_like(y);
  at::Tensor idx = at::empty_like(y, opts.dtype(at::kByte));
  at::Tensor mean_t = at::empty({C}, opts);
  at::Tensor var_t = at::empty({C}, opts);
  const int64_t rows = N * H * W;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bn_relu_pool_forward", [&] {
    const scalar_t* xd = x.const_data_ptr<scalar_t>();
    std::vector<double> shift(C);
    for (int64_t c = 0; c < C; ++c) shift[c] = double(xd[c]);  // shifted sums: no cancellation
    std::vector<double> S, Q;
    chunked_reduce(rows, C, S, Q, [&](int64_t r0, int64_t nr, double* s, double* q) {
      stats_rows_any(xd + r0 * C, nr, C, shift.data(), s, q);
    });
    const at::Tensor w = weight_in.contiguous(), b = bias_in.contiguous();
    std::vector<scalar_t> mean(C), scale(C), beta(C);
    scalar_t* md = mean_t.data_ptr<scalar_t>();
    scalar_t* vd = var_t.data_ptr<scalar_t>();
    for (int64_t c = 0; c < C; ++c) {
      double dm = S[c] / double(rows);
      double var = std::max(Q[c] / double(rows) - dm * dm, 0.0);
      if (std::isnan(Q[c])) var = Q[c];
      mean[c] = scalar_t(shift[c] + dm);
      md[c] = mean[c];
      vd[c] = scalar_t(var);
      scale[c] = scalar_t(double(w.const_data_ptr<scalar_t>()[c]) / std::sqrt(var + eps));
      beta[c] = b.const_data_ptr<scalar_t>()[c];
    }
    scalar_t* yd = y.data_ptr<scalar_t>();
    scalar_t* xpd = xp.data_ptr<scalar_t>();
    uint8_t* id = idx.data_ptr<uint8_t>();
    at::parallel_for(0, N * OH, 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t n = r / OH, oh = r % OH;
        const scalar_t* x0 = xd + ((n * H + 2 * oh) * W) * C;
        const int64_t o = (n * OH + oh) * OW * C;
        pool_row_any(x0, x0 + W * C, OW, C, mean.data(), scale.data(), beta.data(), yd + o, xpd + o, id + o);
      }
    });
  });
  if (!cl) {
    y = y.contiguous();
    xp = xp.contiguous();
    idx = idx.contiguous();
  }
  return {y, idx, xp, mean_t, var_t};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bn_relu_pool_backward_cpu(
    const at::Tensor& grad_y_in, const at::Tensor& x_in, const at::Tensor& weight_in, const at::Tensor& y_in,
    const at::Tensor& idx_in, const at::Tensor& xp_in, const at::Tensor& mean_in, const at::Tensor& var_in,
    double eps) {
  check_inputs("bn_relu_pool_backward", x_in, weight_in, weight_in);
  const int64_t N = x_in.size(0), C = x_in.size(1), H = x_in.size(2), W = x_in.size(3);
  const int64_t OH = H / 2, OW = W / 2;
  for (const at::Tensor* t : {&grad_y_in, &y_in, &idx_in, &xp_in}) {
    TORCH_CHECK(t->dim() == 4 && t->size(0) == N && t->size(1) == C && t->size(2) == OH && t->size(3) == OW,
                "bn_relu_pool_backward: pooled tensors must be (", N, ", ", C, ", ", OH, ", ", OW, "), got ",
                t->sizes());
  }
  TORCH_CHECK(idx_in.scalar_type() == at::kByte, "bn_relu_pool_backward: idx must be uint8");
  const bool cl = glamor_fast::is_channels_last(x_in);
  // No ATen call for inputs already in the kernels' dtype and layout (the channels_last training path).
  const at::Tensor dy_st = grad_y_in.scalar_type() == x_in.scalar_type() ? grad_y_in : grad_y_in.to(x_in.scalar_type());
  const at::Tensor x = to_cl(x_in), dy = to_cl(dy_st), y = to_cl(y_in);
  const at::Tensor idx = to_cl(idx_in), xp = to_cl(xp_in);
  at::Tensor dx = at::empty({N, C, H, W}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  at::Tensor dgamma = at::empty({C}, weight_in.options());
  at::Tensor dbeta = at::empty({C}, weight_in.options());
  const int64_t pooled_rows = N * OH * OW;
  const double n = double(N * H * W);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bn_relu_pool_backward", [&] {
    TORCH_CHECK(mean_in.scalar_type() == x.scalar_type() && var_in.scalar_type() == x.scalar_type() &&
                    weight_in.scalar_type() == x.scalar_type(),
                "bn_relu_pool_backward: mean, var and weight must have x's dtype ", x.scalar_type());
    const at::Tensor mean_c = mean_in.contiguous(), var_c = var_in.contiguous(), w_c = weight_in.contiguous();
    const scalar_t* mean = mean_c.const_data_ptr<scalar_t>();
    const scalar_t* dyd = dy.const_data_ptr<scalar_t>();
    const scalar_t* yd = y.const_data_ptr<scalar_t>();
    const scalar_t* xpd = xp.const_data_ptr<scalar_t>();
    std::vector<double> S1, S2;
    chunked_reduce(pooled_rows, C, S1, S2, [&](int64_t r0, int64_t nr, double* s1, double* s2) {
      bwd_reduce_any(dyd + r0 * C, yd + r0 * C, xpd + r0 * C, nr, C, mean, s1, s2);
    });
    std::vector<scalar_t> a(C), b(C), c1(C);
    scalar_t* dg = dgamma.data_ptr<scalar_t>();
    scalar_t* db = dbeta.data_ptr<scalar_t>();
    for (int64_t c = 0; c < C; ++c) {
      const double invstd = 1.0 / std::sqrt(double(var_c.const_data_ptr<scalar_t>()[c]) + eps);
      const double g = double(w_c.const_data_ptr<scalar_t>()[c]);
      const double dbeta_c = S1[c], dgamma_c = S2[c] * invstd;
      dg[c] = scalar_t(dgamma_c);
      db[c] = scalar_t(dbeta_c);
      a[c] = scalar_t(g * invstd);
      b[c] = scalar_t(-g * invstd * dbeta_c / n);
      c1[c] = scalar_t(g * invstd * dgamma_c / n * invstd);
    }
    const scalar_t* xd = x.const_data_ptr<scalar_t>();
    scalar_t* dxd = dx.data_ptr<scalar_t>();
    const uint8_t* id = idx.const_data_ptr<uint8_t>();
    const DxCoef<scalar_t> coef{mean, a.data(), b.data(), c1.data()};
    at::parallel_for(0, N * OH, 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t nn = r / OH, oh = r % OH;
        const int64_t i0 = (nn * H + 2 * oh) * W * C, o = r * OW * C;
        bwd_dx_rows_any(xd + i0, xd + i0 + W * C, dxd + i0, dxd + i0 + W * C, W, OW, C, dyd + o, yd + o, id + o,
                        coef);
      }
    });
    if (H > 2 * OH) {  // the floored-off last row of each image
      at::parallel_for(0, N * W, 1, [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) {
          const int64_t nn = p / W, w = p % W;
          const int64_t i = ((nn * H + H - 1) * W + w) * C;
          bwd_dx_plain(xd + i, dxd + i, C, coef);
        }
      });
    }
  });
  if (!cl) dx = dx.contiguous();
  return {dx, dgamma, dbeta};
}

}  // namespace

TORCH_LIBRARY_IMPL(glamor_fast, CPU, m) {
  m.impl("bn_relu_pool_forward", &bn_relu_pool_forward_cpu);
  m.impl("bn_relu_pool_backward", &bn_relu_pool_backward_cpu);
}
