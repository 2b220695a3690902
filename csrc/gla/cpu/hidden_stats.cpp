// Batch statistics of GLA's hidden layer on the CPU (glamor_fast::gla_hidden_stats_forward /
// _backward; maths: docs/gla.md S1-S2; glamor_fast/ops/gla/hidden_stats.py wraps them in a custom
// op), on the GLA op's tiles and GEMMs (tiles.h): per tile z = V W1c^T, then the sums (forward) or
// dz in place and the GEMMs dcontext = dz W1c, dW1c += V^T dz (backward). Sums per tile in the
// compute dtype, across tiles in double; groups added in a fixed order.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

// No code here reads the FP exception flags; under the default -ftrapping-math GCC keeps the
// NaN-keeping select of the sums (x < 0 ? 0 : x) as a branch and does not vectorise the loop
// (2.7x slower forward). Only this file: the flag for the whole extension made the encoder
// block kernel 3.5x slower (bench.block, 13.3 -> 46.5 ms).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include <algorithm>
#include <tuple>
#include <vector>

#include "common/simd.h"
#include "gla.h"
#include "tiles.h"

namespace glamor_fast {
namespace cpu {
namespace {

using namespace gla_tiles;

// Hidden statistics: s1 = sum_j h_j, s2 = sum_j h_j^2 with h = relu(z_j + u) (NaN stays NaN).
template <typename T>
GLAMOR_CPU_INLINE void hidden_sums_impl(const T* z, const T* u, int64_t T_, int64_t Hd, T* s1, T* s2) {
  std::fill(s1, s1 + Hd, T(0));
  std::fill(s2, s2 + Hd, T(0));
  for (int64_t j = 0; j < T_; ++j) {
    const T* zj = z + j * Hd;
#pragma omp simd
    for (int64_t k = 0; k < Hd; ++k) {
      const T x = zj[k] + u[k];
      const T h = x < T(0) ? T(0) : x;  // NaN stays NaN
      s1[k] += h;
      s2[k] += h * h;
    }
  }
}

// Their backward, in place: dz_j = [z_j + u > 0] (alpha + beta (z_j + u)); sums = sum_j dz_j.
template <typename T>
GLAMOR_CPU_INLINE void hidden_dz_impl(T* z, const T* u, const T* alpha, const T* beta, int64_t T_, int64_t Hd, T* sums) {
  std::fill(sums, sums + Hd, T(0));
  for (int64_t j = 0; j < T_; ++j) {
    T* zj = z + j * Hd;
#pragma omp simd
    for (int64_t k = 0; k < Hd; ++k) {
      const T zz = zj[k] + u[k];
      const T dz = zz > T(0) ? alpha[k] + beta[k] * zz : T(0);
      zj[k] = dz;
      sums[k] += dz;
    }
  }
}

GLAMOR_CPU_CLONES void tile_hidden_sums(const float* z, const float* u, int64_t T_, int64_t Hd, float* s1, float* s2) {
  hidden_sums_impl<float>(z, u, T_, Hd, s1, s2);
}
GLAMOR_CPU_CLONES void tile_hidden_sums(const double* z, const double* u, int64_t T_, int64_t Hd, double* s1,
                                        double* s2) {
  hidden_sums_impl<double>(z, u, T_, Hd, s1, s2);
}
GLAMOR_CPU_CLONES void tile_hidden_dz(float* z, const float* u, const float* alpha, const float* beta, int64_t T_,
                                      int64_t Hd, float* sums) {
  hidden_dz_impl<float>(z, u, alpha, beta, T_, Hd, sums);
}
GLAMOR_CPU_CLONES void tile_hidden_dz(double* z, const double* u, const double* alpha, const double* beta,
                                      int64_t T_, int64_t Hd, double* sums) {
  hidden_dz_impl<double>(z, u, alpha, beta, T_, Hd, sums);
}


// The tiles of items [first, last) (as the GLA kernels walk them): for each, z recomputed into
// zbuf, then f(tile view, z, cells, parts), where parts(part) calls part(b, n0, T_, j0, item) for
// each batch element's share of the tile (its cells [n0, n0 + T_), from tile row j0).
template <typename T, typename F>
void for_each_tile(const Cells<T>& V, const Params<T>& P, const W1cPacks& pk, const Split& S, int64_t Hd,
                   int64_t first, int64_t last, T* zbuf, T* vb, T* pack, F&& f) {
  const int64_t N = V.N, Dc = V.Dc;
  for (int64_t it = first; it < last;) {
    const int64_t nb = std::min(S.batch, last - it);
    if (nb > 1) {
      const auto tvb = batch_view(V, it, nb, vb, pack);
      hidden_tile(P, pk, tvb, nb * N, Dc, Hd, zbuf);
      f(tvb, zbuf, nb * N, [&](auto&& part) {
        for (int64_t i = 0; i < nb; ++i) part(it + i, int64_t(0), N, i * N, it + i);
      });
      it += nb;
      continue;
    }
    const int64_t b = it / S.chunks, n_begin = (it % S.chunks) * S.chunk;
    const int64_t n_end = std::min(N, n_begin + S.chunk);
    for (int64_t n0 = n_begin; n0 < n_end; n0 += S.tile) {
      const int64_t T_ = std::min(S.tile, n_end - n0);
      const auto tv = tile_view(V, b, n0, T_, pack);
      hidden_tile(P, pk, tv, T_, Dc, Hd, zbuf);
      f(tv, zbuf, T_, [&](auto&& part) { part(b, n0, T_, int64_t(0), it); });
    }
    ++it;
  }
}

template <typename T>
void stats_forward_kernel(const Cells<T>& V, const Params<T>& P, int64_t Hd, const Split& S,
                          double* partial /* (groups, 2, Hd) */) {
  const int64_t N = V.N, Dc = V.Dc;
  const W1cPacks pk = make_packs(P, S, N, Dc, Hd, false, false);
  const int64_t max_cells = S.batch > 1 ? S.batch * N : S.tile;
  at::parallel_for(0, S.groups, 1, [&](int64_t g0, int64_t g1) {
    std::vector<T> z(Hd * max_cells), s1(Hd), s2(Hd);
    std::vector<T> pack(V.layout == Layout::Packed ? Dc * S.tile : 0);
    std::vector<T> vb(S.batch > 1 && !batch_in_place(V) ? Dc * S.batch * N : 0);
    for (int64_t g = g0; g < g1; ++g) {
      double* sum = partial + g * 2 * Hd;
      std::fill(sum, sum + 2 * Hd, 0.0);
      auto [first, last] = group_items(S, g);
      for_each_tile(V, P, pk, S, Hd, first, last, z.data(), vb.data(), pack.data(),
                    [&](const TileView<T>&, const T* zt, int64_t, auto&& parts) {
                      parts([&](int64_t b, int64_t, int64_t T_, int64_t j0, int64_t) {
                        tile_hidden_sums(zt + j0 * Hd, P.u + b * Hd, T_, Hd, s1.data(), s2.data());
                        for (int64_t k = 0; k < Hd; ++k) {
                          sum[k] += double(s1[k]);
                          sum[Hd + k] += double(s2[k]);
                        }
                      });
                    });
    }
  });
}

template <typename T>
void stats_backward_kernel(const Cells<T>& V, const Params<T>& P, int64_t Hd, const Split& S,
                           const T* alpha, const T* beta /* (Hd): dh = alpha + beta h */, bool need_w1c,
                           GradContext<T> dctx, double* du /* (items, Hd), zeroed */,
                           T* partials /* (groups, Hd * Dc) */) {
  const int64_t N = V.N, Dc = V.Dc;
  const bool need_ctx = dctx.data != nullptr;
  const W1cPacks pk = make_packs(P, S, N, Dc, Hd, need_ctx, dctx.cells_major);
  const int64_t max_cells = S.batch > 1 ? S.batch * N : S.tile;
  at::parallel_for(0, S.groups, 1, [&](int64_t g0, int64_t g1) {
    std::vector<T> z(Hd * max_cells), sums(Hd);
    std::vector<T> pack(V.layout == Layout::Packed ? Dc * S.tile : 0);
    std::vector<T> vb(S.batch > 1 && !batch_in_place(V) ? Dc * S.batch * N : 0);
    for (int64_t g = g0; g < g1; ++g) {
      T* dW1c = partials + g * Hd * Dc;
      std::fill(dW1c, dW1c + Hd * Dc, T(0));
      auto [first, last] = group_items(S, g);
      for_each_tile(V, P, pk, S, Hd, first, last, z.data(), vb.data(), pack.data(),
                    [&](const TileView<T>& tv, T* zt, int64_t cells, auto&& parts) {
                      parts([&](int64_t b, int64_t n0, int64_t T_, int64_t j0, int64_t item) {
                        T* dz = zt + j0 * Hd;  // in place
                        tile_hidden_dz(dz, P.u + b * Hd, alpha, beta, T_, Hd, sums.data());
                        for (int64_t k = 0; k < Hd; ++k) du[item * Hd + k] += double(sums[k]);
                        if (need_ctx) dv_tile(P, pk, dctx, dz, T_, b, n0, Dc, Hd);
                      });
                      if (need_w1c) add_dw1c_tile(tv, zt, cells, Dc, Hd, dW1c);
                    });
    }
  });
}

// The GLA op's prepared parameters without its score layer (w2 = 0, b2 = 0).
Prepared prepare_stats(const at::Tensor& face, const at::Tensor& context, const at::Tensor& w1, const at::Tensor& b1,
                       const GlaDims& d) {
  Prepared p;
  static_cast<host::Params&>(p) =
      host::prepare_params(face, w1, b1, at::zeros({d.Hd}, w1.options()), c10::nullopt, c10::nullopt, d);
  p.context = context;
  p.b2 = 0;
  p.finite = true;
  return p;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> gla_hidden_stats_forward_cpu(const at::Tensor& face, const at::Tensor& context,
                                                                const at::Tensor& w1, const at::Tensor& b1) {
  const auto d = check_gla_stats_args(face, context, w1, b1, c10::DeviceType::CPU);
  auto opts = context.options();
  auto mean = at::zeros({d.Hd}, opts.dtype(at::kDouble)), var = at::zeros({d.Hd}, opts.dtype(at::kDouble));
  if (d.B > 0 && d.N > 0) {
    const Prepared p = prepare_stats(face, context, w1, b1, d);
    AT_DISPATCH_FLOATING_TYPES(context.scalar_type(), "gla_hidden_stats_forward_cpu", [&] {
      auto V = describe_cells<scalar_t>(context);
      auto P = make_params<scalar_t>(p, d.Df);
      auto S = make_split(d.B, d.N, d.Dc, d.Hd, sizeof(scalar_t));
      auto partial = at::empty({S.groups, 2, d.Hd}, opts.dtype(at::kDouble));
      stats_forward_kernel<scalar_t>(V, P, d.Hd, S, partial.data_ptr<double>());
      auto total = partial.sum(0);  // (2, Hd), groups in a fixed order
      const double n = double(d.B * d.N);
      mean = total[0] / n;
      var = (total[1] / n - mean.square()).clamp_min(0.0);
    });
  }
  return {mean.to(context.scalar_type()), var.to(context.scalar_type())};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gla_hidden_stats_backward_cpu(
    const at::Tensor& grad_mean, const at::Tensor& grad_var, const at::Tensor& face, const at::Tensor& context,
    const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& mean, bool need_context, bool need_w1c) {
  const auto d = check_gla_stats_args(face, context, w1, b1, c10::DeviceType::CPU);
  const auto st = context.scalar_type();
  auto opts = context.options();
  at::Tensor dU = at::zeros({d.B, d.Hd}, opts), dW1c = at::zeros({d.Hd, d.Dc}, opts);
  at::Tensor dctx = need_context ? host::empty_grad_context(context, d, st) : at::empty({0}, opts);
  if (d.B == 0 || d.N == 0) {
    if (need_context) dctx.zero_();
    return {dU, dW1c, dctx};
  }
  // dh = gmean / n + gvar * 2 (h - mean) / n = alpha + beta h, in double then the compute dtype
  const double n = double(d.B * d.N);
  auto gm = grad_mean.to(at::kDouble), gv = grad_var.to(at::kDouble), mu = mean.to(at::kDouble);
  auto alpha = (gm / n - gv * (2.0 / n) * mu).to(st).contiguous();
  auto beta = (gv * (2.0 / n)).to(st).contiguous();
  const Prepared p = prepare_stats(face, context, w1, b1, d);
  AT_DISPATCH_FLOATING_TYPES(st, "gla_hidden_stats_backward_cpu", [&] {
    auto V = describe_cells<scalar_t>(context);
    auto P = make_params<scalar_t>(p, d.Df);
    auto S = make_split(d.B, d.N, d.Dc, d.Hd, sizeof(scalar_t));
    auto du = at::zeros({S.items, d.Hd}, opts.dtype(at::kDouble));
    auto partials = at::empty({S.groups, d.Hd * d.Dc}, opts);
    const bool dv_ct = !need_context || dctx.is_contiguous();
    stats_backward_kernel<scalar_t>(V, P, d.Hd, S, alpha.data_ptr<scalar_t>(), beta.data_ptr<scalar_t>(), need_w1c,
                                    GradContext<scalar_t>{need_context ? dctx.data_ptr<scalar_t>() : nullptr,
                                                          need_context ? dctx.stride(0) : 0, !dv_ct, d.N},
                                    du.data_ptr<double>(), partials.data_ptr<scalar_t>());
    dU = du.view({d.B, S.chunks, d.Hd}).sum(1).to(st);
    if (need_w1c) {
      auto total = partials[0].clone();
      for (int64_t g = 1; g < S.groups; ++g) total.add_(partials[g]);
      dW1c = total.view({d.Hd, d.Dc});
    }
  });
  return {dU, dW1c, dctx};
}

TORCH_LIBRARY_IMPL(glamor_fast, CPU, m) {
  m.impl("gla_hidden_stats_forward", &gla_hidden_stats_forward_cpu);
  m.impl("gla_hidden_stats_backward", &gla_hidden_stats_backward_cpu);
}

}  // namespace cpu
}  // namespace glamor_fast
