// Fused CPU forward and backward of the GLA op (maths: docs/gla.md, forward F6-F10, backward
// B1-B11).
//
// Work is split into items (b, chunk of cells); items are grouped into one group per thread
// (fixed for a fixed thread count, hence deterministic). Each item walks its cells in tiles:
// the hidden tile Z = V_tile W1c^T (+ u) is one small GEMM into a thread-local buffer that stays
// in cache, then bias, ReLU, optional folded BN, score, online softmax and the weighted sum are
// done on it before the next tile. Nothing of size (B, N, Hd) is ever allocated.
// When N is small (7x7), the tile is several whole batch elements (Split::batch) so that the
// GEMMs are larger; W1c, an operand of every tile GEMM, is packed once per call (MKL pack API).
// float16/bfloat16 inputs compute in float32: the context converted tile by tile, the small
// parameters at the boundary, the results back.
// The tiling machinery (GEMM, tile views, the split, parameters) is in tiles.h, shared with the
// hidden-statistics kernels (hidden_stats.cpp); the AMX backward GEMMs in bf16x3.*.
#include "gla.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "bf16x3.h"
#include "common/simd.h"
#include "gla/checks.h"
#include "gla/host.h"
#include "host_cpu.h"
#include "tiles.h"

namespace glamor_fast {
namespace cpu {
namespace {

using namespace gla_tiles;

// ---------------------------------------------------------------------------------------------
// Elementwise tile loops: always-inline templates plus float / double wrappers compiled per
// instruction set (common/simd.h).

// s[j] = b2 + sum_k w2_k h(z[j * Hd + k] + u_k) for the T_ cells of a tile.
template <typename T>
GLAMOR_CPU_INLINE void scores_impl(const Params<T>& P, const T* u, const T* z, int64_t T_, int64_t Hd, T* s) {
  const T* w2 = P.w2;
  for (int64_t j = 0; j < T_; ++j) {
    const T* zj = z + j * Hd;
    T acc = 0;
    if (P.scale != nullptr) {
      const T* g = P.scale;
      const T* be = P.shift;
#pragma omp simd reduction(+ : acc)
      for (int64_t k = 0; k < Hd; ++k) {
        const T h1 = std::max(zj[k] + u[k], T(0));
        acc += w2[k] * std::max(g[k] * h1 + be[k], T(0));
      }
    } else {
#pragma omp simd reduction(+ : acc)
      for (int64_t k = 0; k < Hd; ++k) acc += w2[k] * std::max(zj[k] + u[k], T(0));
    }
    s[j] = acc + P.b2;
  }
}

// acc[c] = rescale * acc[c] + sum_j p_j v_j[c]
template <typename T>
GLAMOR_CPU_INLINE void pool_impl(const TileView<T>& tv, const T* p, int64_t T_, int64_t Dc, T rescale, T* acc) {
  if (tv.ct) {
    for (int64_t c = 0; c < Dc; ++c) {
      const T* vc = tv.p + c * tv.ld;
      T dot = 0;
#pragma omp simd reduction(+ : dot)
      for (int64_t j = 0; j < T_; ++j) dot += vc[j] * p[j];
      acc[c] = acc[c] * rescale + dot;
    }
  } else {
    for (int64_t c = 0; c < Dc; ++c) acc[c] *= rescale;
    for (int64_t j = 0; j < T_; ++j) {
      const T* vj = tv.p + j * tv.ld;
      const T pj = p[j];
#pragma omp simd
      for (int64_t c = 0; c < Dc; ++c) acc[c] += pj * vj[c];
    }
  }
}

// gv[j] = gp . v_j
template <typename T>
GLAMOR_CPU_INLINE void gv_impl(const TileView<T>& tv, const T* gp, int64_t T_, int64_t Dc, T* gv) {
  if (tv.ct) {
    std::fill(gv, gv + T_, T(0));
    for (int64_t c = 0; c < Dc; ++c) {
      const T gc = gp[c];
      const T* vc = tv.p + c * tv.ld;
#pragma omp simd
      for (int64_t j = 0; j < T_; ++j) gv[j] += gc * vc[j];
    }
  } else {
    for (int64_t j = 0; j < T_; ++j) {
      const T* vj = tv.p + j * tv.ld;
      T dot = 0;
#pragma omp simd reduction(+ : dot)
      for (int64_t c = 0; c < Dc; ++c) dot += gp[c] * vj[c];
      gv[j] = dot;
    }
  }
}

// ReLU'(x) g. Clean (every ds and parameter finite): a 0/1 product, which vectorises. Otherwise a
// select, so a masked-off unit passes exactly 0 even when g is NaN / inf, as PyTorch's ReLU
// backward (a where) does; GCC does not vectorise that select, hence the two paths.
#define GLAMOR_RELU_GRAD(x, g) \
  (Clean ? ((x) > T(0) ? T(1) : T(0)) * (g) : ((x) > T(0) ? (g) : T(0)))

// z (T_, Hd) -> dz (T_, Hd) (dz may be z: in place), given ds (T_); tile sums (over the tile's
// cells) of dw2, dgamma, dbeta and du into sums (4, Hd), which the caller adds into double
// accumulators (docs/gla.md B5-B7, B10).
template <bool Clean, typename T>
GLAMOR_CPU_INLINE void dz_loop(const Params<T>& P, const T* u, const T* ds, const T* z, T* dzo, int64_t T_,
                           int64_t Hd, T* sums) {
  T* dw2 = sums;
  T* dg = sums + Hd;
  T* db = sums + 2 * Hd;
  T* du = sums + 3 * Hd;
  std::fill(sums, sums + 4 * Hd, T(0));
  const T* w2 = P.w2;
  for (int64_t j = 0; j < T_; ++j) {
    const T* zj = z + j * Hd;
    T* dzj = dzo + j * Hd;
    const T dsj = ds[j];
    if (P.scale != nullptr) {
      const T* g = P.scale;
      const T* be = P.shift;
#pragma omp simd
      for (int64_t k = 0; k < Hd; ++k) {
        const T zz = zj[k] + u[k], gk = g[k];
        const T h1 = std::max(zz, T(0));
        const T y = gk * h1 + be[k];
        dw2[k] += dsj * std::max(y, T(0));
        const T dy = GLAMOR_RELU_GRAD(y, dsj * w2[k]);
        dg[k] += dy * h1;
        db[k] += dy;
        const T dz = GLAMOR_RELU_GRAD(zz, dy * gk);
        dzj[k] = dz;
        du[k] += dz;
      }
    } else {
#pragma omp simd
      for (int64_t k = 0; k < Hd; ++k) {
        const T zz = zj[k] + u[k];
        dw2[k] += dsj * std::max(zz, T(0));
        const T dz = GLAMOR_RELU_GRAD(zz, dsj * w2[k]);
        dzj[k] = dz;
        du[k] += dz;
      }
    }
  }
}

template <typename T>
GLAMOR_CPU_INLINE void dz_impl(const Params<T>& P, const T* u, const T* ds, const T* z, T* dzo, int64_t T_,
                           int64_t Hd, T* sums) {
  bool clean = P.finite;
  for (int64_t j = 0; j < T_ && clean; ++j) clean = std::isfinite(ds[j]);
  if (clean) dz_loop<true>(P, u, ds, z, dzo, T_, Hd, sums);
  else dz_loop<false>(P, u, ds, z, dzo, T_, Hd, sums);
}

// out += gp a^T for a dV tile: cells_major out[j * ld + c], else out[c * ld + j].
template <typename T>
GLAMOR_CPU_INLINE void outer_impl(T* out, int64_t ld, bool cells_major, const T* gp, const T* a, int64_t T_, int64_t Dc) {
  if (cells_major) {
    for (int64_t j = 0; j < T_; ++j) {
      T* oj = out + j * ld;
      const T aj = a[j];
#pragma omp simd
      for (int64_t c = 0; c < Dc; ++c) oj[c] += gp[c] * aj;
    }
  } else {
    for (int64_t c = 0; c < Dc; ++c) {
      T* oc = out + c * ld;
      const T gc = gp[c];
#pragma omp simd
      for (int64_t j = 0; j < T_; ++j) oc[j] += gc * a[j];
    }
  }
}

// dV tile from the bf16x3 GEMM's m (without ds): out = ds_j m_j + a_j gp, in either layout;
// m(j, c) = m[j * mj + c * mc].
template <typename T>
GLAMOR_CPU_INLINE void dv_write_impl(T* out, int64_t ld, bool cells_major, const T* m, int64_t mj, int64_t mc,
                                 const T* ds, const T* a, const T* gp, int64_t T_, int64_t Dc) {
  if (cells_major) {
    for (int64_t j = 0; j < T_; ++j) {
      T* oj = out + j * ld;
      const T* mr = m + j * mj;
      const T dsj = ds[j], aj = a[j];
#pragma omp simd
      for (int64_t c = 0; c < Dc; ++c) oj[c] = dsj * mr[c * mc] + aj * gp[c];
    }
  } else {
    for (int64_t c = 0; c < Dc; ++c) {
      T* oc = out + c * ld;
      const T* mr = m + c * mc;
      const T gc = gp[c];
#pragma omp simd
      for (int64_t j = 0; j < T_; ++j) oc[j] = ds[j] * mr[j * mj] + a[j] * gc;
    }
  }
}

#define GLAMOR_TILE_LOOPS(T)                                                                        \
  GLAMOR_CPU_CLONES void tile_scores(const Params<T>& P, const T* u, const T* z, int64_t T_,        \
                                     int64_t Hd, T* s) {                                           \
    scores_impl<T>(P, u, z, T_, Hd, s);                                                            \
  }                                                                                                \
  GLAMOR_CPU_CLONES void tile_pool(const TileView<T>& tv, const T* p, int64_t T_, int64_t Dc,      \
                                   T rescale, T* acc) {                                            \
    pool_impl<T>(tv, p, T_, Dc, rescale, acc);                                                     \
  }                                                                                                \
  GLAMOR_CPU_CLONES void tile_gv(const TileView<T>& tv, const T* gp, int64_t T_, int64_t Dc,       \
                                 T* gv) {                                                          \
    gv_impl<T>(tv, gp, T_, Dc, gv);                                                                \
  }                                                                                                \
  GLAMOR_CPU_CLONES void tile_dz(const Params<T>& P, const T* u, const T* ds, const T* z, T* dz,  \
                                 int64_t T_, int64_t Hd, T* sums) {                                \
    dz_impl<T>(P, u, ds, z, dz, T_, Hd, sums);                                                     \
  }                                                                                                \
  GLAMOR_CPU_CLONES void tile_outer(T* out, int64_t ld, bool cells_major, const T* gp, const T* a,  \
                                    int64_t T_, int64_t Dc) {                                      \
    outer_impl<T>(out, ld, cells_major, gp, a, T_, Dc);                                            \
  }                                                                                                \
  [[maybe_unused]] GLAMOR_CPU_CLONES void tile_dv_write(T* out, int64_t ld, bool cells_major, const T* m, int64_t mj,   \
                                       int64_t mc, const T* ds, const T* a, const T* gp, int64_t T_,   \
                                       int64_t Dc) {                                                   \
    dv_write_impl<T>(out, ld, cells_major, m, mj, mc, ds, a, gp, T_, Dc);                          \
  }

GLAMOR_TILE_LOOPS(float)
GLAMOR_TILE_LOOPS(double)

// ---------------------------------------------------------------------------------------------
// Forward. Per item: online softmax state (m, l, acc[Dc]) into `state` (items x (Dc + 2)), raw
// scores into attn (B x N); a merge pass per b then writes pooled, lse and attn.
template <typename T>
void forward_kernel(const Cells<T>& V, const Params<T>& P, int64_t B, int64_t Hd, const Split& S,
                    T* pooled /* (B, Dc) */, T* attn /* (B, N) */, T* lse /* (B) */,
                    T* hidden /* (B, N, Hd): z = V W1c^T saved for the backward, or nullptr */) {
  const int64_t N = V.N, Dc = V.Dc;
  std::vector<T> state(S.items * (Dc + 2));
  const W1cPacks pk = make_packs(P, S, N, Dc, Hd, false, false);
  at::parallel_for(0, S.groups, 1, [&](int64_t g0, int64_t g1) {
    std::vector<T> z(Hd * S.tile), p(S.tile);
    std::vector<T> pack(V.layout == Layout::Packed ? Dc * S.tile : 0);
    const bool batched = S.batch > 1;
    std::vector<T> zb(batched ? Hd * S.batch * N : 0);
    std::vector<T> vb(batched && !batch_in_place(V) ? Dc * S.batch * N : 0);
    // One tile of batch element b: z (T_, Hd) computed; scores, online softmax, pooling.
    auto step = [&](const TileView<T>& tv, const T* zt, int64_t T_, int64_t b, int64_t n0, T* acc, T& m, T& l) {
      const T* u = P.u + b * Hd;
      T* s = attn + b * N + n0;  // raw scores for now
      tile_scores(P, u, zt, T_, Hd, s);
      T tmax = s[0];
      for (int64_t j = 1; j < T_; ++j) tmax = std::max(tmax, s[j]);
      const T m_new = std::max(m, tmax);
      const T rescale = std::exp(m - m_new);  // 0 on the first tile (m = -inf)
      T tile_sum = 0;
      for (int64_t j = 0; j < T_; ++j) {
        p[j] = std::exp(s[j] - m_new);
        tile_sum += p[j];
      }
      l = l * rescale + tile_sum;
      m = m_new;
      tile_pool(tv, p.data(), T_, Dc, rescale, acc);
    };
    for (int64_t g = g0; g < g1; ++g) {
      auto [first, last] = group_items(S, g);
      for (int64_t it = first; it < last;) {
        const int64_t nb = std::min(S.batch, last - it);
        if (nb > 1) {  // items are whole batch elements (chunks == 1), each a single tile
          const auto tvb = batch_view(V, it, nb, vb.data(), pack.data());
          T* zt = hidden != nullptr ? hidden + it * N * Hd : zb.data();
          hidden_tile(P, pk, tvb, nb * N, Dc, Hd, zt);
          for (int64_t i = 0; i < nb; ++i) {
            T* acc = state.data() + (it + i) * (Dc + 2);
            std::fill(acc, acc + Dc, T(0));
            T m = -std::numeric_limits<T>::infinity(), l = 0;
            step(sub_view(tvb, i * N), zt + i * N * Hd, N, it + i, 0, acc, m, l);
            acc[Dc] = m;
            acc[Dc + 1] = l;
          }
          it += nb;
          continue;
        }
        const int64_t b = it / S.chunks, n_begin = (it % S.chunks) * S.chunk;
        const int64_t n_end = std::min(N, n_begin + S.chunk);
        T* acc = state.data() + it * (Dc + 2);
        std::fill(acc, acc + Dc, T(0));
        T m = -std::numeric_limits<T>::infinity(), l = 0;
        for (int64_t n0 = n_begin; n0 < n_end; n0 += S.tile) {
          const int64_t T_ = std::min(S.tile, n_end - n0);
          const auto tv = tile_view(V, b, n0, T_, pack.data());
          T* zt = hidden != nullptr ? hidden + (b * N + n0) * Hd : z.data();
          hidden_tile(P, pk, tv, T_, Dc, Hd, zt);
          step(tv, zt, T_, b, n0, acc, m, l);
        }
        acc[Dc] = m;
        acc[Dc + 1] = l;
        ++it;
      }
    }
  });
  // Merge the chunks of each b in a fixed order; normalise.
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const T* st = state.data() + b * S.chunks * (Dc + 2);
      T m = -std::numeric_limits<T>::infinity();
      for (int64_t c = 0; c < S.chunks; ++c) m = std::max(m, st[c * (Dc + 2) + Dc]);
      T l = 0;
      T* out = pooled + b * Dc;
      std::fill(out, out + Dc, T(0));
      for (int64_t c = 0; c < S.chunks; ++c) {
        const T* sc = st + c * (Dc + 2);
        const T w = std::exp(sc[Dc] - m);
        l += w * sc[Dc + 1];
        for (int64_t d = 0; d < Dc; ++d) out[d] += w * sc[d];
      }
      const T inv = T(1) / l;
      for (int64_t d = 0; d < Dc; ++d) out[d] *= inv;
      const T lse_b = m + std::log(l);
      lse[b] = lse_b;
      T* a = attn + b * N;
      for (int64_t i = 0; i < N; ++i) a[i] = std::exp(a[i] - lse_b);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Backward. Per group partials of dW1c, dw2, dgamma, dbeta; per item du (Hd). Summed afterwards
// in fixed order. The vector sums (dw2, dgamma, dbeta, du) run over all B*N cells, so they
// accumulate in double even for float: as accurate as PyTorch's pairwise sums.
struct BackwardNeeds {
  bool context, w1c;  // write dcontext; accumulate dW1c
};


// The softmax's incoming gradient per cell, t_i = gp . v_i + ga_i, and from the same values
// delta = sum_i a_i t_i - g_lse; then ds_i = a_i (t_i - delta). Forming delta from the very
// terms ds uses (as PyTorch's softmax backward does, rather than from gp . pooled) makes ds
// exactly 0 where it truly is: one cell (a = 1), or a one-hot softmax (docs/gla.md B1-B3).
// 16-bit inputs: attn was rounded to 16 bits, so ds uses a recomputed in float32 from the scores
// and lse, while delta is formed in the pre-pass from the rounded attn (converted exactly) and
// the same t_i: where the softmax is one-hot (or N = 1) that attn is exactly 0 / 1, so ds is
// exactly 0 there too.
struct SoftmaxGrad {
  const void* attn;        // (B, N) a for ds: the forward's attn in the compute type, or nullptr:
                           // recompute a from the scores and lse (16-bit inputs)
  const void* attn_delta;  // (B, N) a for delta in the pre-pass (attn, or the 16-bit attn converted)
  void* t;                 // (B, N) t_i precomputed by the pre-pass, or nullptr: formed per tile
                           // (only when attn is given and every b is one tile)
  void* delta;             // (B): written by the pre-pass or per tile
};

// t and delta of batch elements whose cells span several tiles (one pass over their cells).
template <typename T>
void softmax_grad_prepass(const Cells<T>& V, const Split& S, int64_t B, const T* gp, const T* ga,
                          const T* a, const T* glse, T* t, T* delta) {
  const int64_t N = V.N, Dc = V.Dc;
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<T> pack(V.layout == Layout::Packed ? Dc * S.tile : 0);
    for (int64_t b = b0; b < b1; ++b) {
      T* tb = t + b * N;
      double acc = 0;
      for (int64_t n0 = 0; n0 < N; n0 += S.tile) {
        const int64_t T_ = std::min(S.tile, N - n0);
        tile_gv(tile_view(V, b, n0, T_, pack.data()), gp + b * Dc, T_, Dc, tb + n0);
        for (int64_t j = n0; j < n0 + T_; ++j) {
          tb[j] += ga[b * N + j];
          acc += double(a[b * N + j]) * double(tb[j]);
        }
      }
      delta[b] = T(acc) - glse[b];
    }
  });
}

// What every thread of the backward reads: the inputs, the split, W1c packed for the tile GEMMs,
// the softmax gradient's inputs, and whether (and with what) the bf16x3 GEMMs run.
template <typename T>
struct BackwardInputs {
  const Cells<T>& V;
  const Params<T>& P;
  const Split& S;
  int64_t Hd;
  const T* gp;       // (B, Dc)
  const T* ga;       // (B, N)
  const T* glse;     // (B)
  const T* lse;      // (B)
  const T* a_saved;  // (B, N) a for ds, or nullptr: recompute it (SoftmaxGrad::attn)
  const T* t_pre;    // (B, N) t from the pre-pass, or nullptr: formed per tile
  const T* delta;    // (B) from the pre-pass (read only with t_pre)
  const T* hidden;   // (B, N, Hd): z saved by the forward, or nullptr: recompute
  BackwardNeeds need;
  GradContext<T> dctx;
  const W1cPacks& pk;
  bool x3;                      // the bf16x3 GEMMs for clean tiles (float32 on AMX)
  const float* x3_c;            // (Hd) c_k = w2_k (times g_k with the folded BatchNorm)
  const bf16x3::Weights& x3_w;  // W' = diag(c) W1c for the dV GEMM
};

// One thread's buffers, and the partial sums of the group it works on.
template <typename T>
struct BackwardScratch {
  std::vector<T> z, s, ds, a, pack, tt, sums, zb, vb;
  std::optional<bf16x3::Tile> xt;
  // Group sums of the dW1c GEMMs without c: (Dc, Hd) from channel-major tiles, (Hd, Dc) from
  // cell-major ones (a group usually has one kind: each is zeroed on its first use in the
  // group and added only if used); the dV GEMM's output (cells, Dc) or (Dc, padded cells).
  std::vector<float> x3_acc_ct, x3_acc_tc;
  bool x3_used_ct = false, x3_used_tc = false;
  bf16x3::AlignedVector<float> x3_m;
  // The group's partials: dW1c (Hd, Dc) in T, dw2 / dgamma / dbeta (Hd) in double.
  T* dW1c = nullptr;
  double *dw2 = nullptr, *dgamma = nullptr, *dbeta = nullptr;

  BackwardScratch(const BackwardInputs<T>& in, int64_t max_cells)
      : z(in.Hd * in.S.tile), s(in.S.tile), ds(max_cells), a(max_cells),
        pack(in.V.layout == Layout::Packed ? in.V.Dc * in.S.tile : 0), tt(in.S.tile), sums(4 * in.Hd),
        zb(in.S.batch > 1 ? in.Hd * in.S.batch * in.V.N : 0),
        vb(in.S.batch > 1 && !batch_in_place(in.V) ? in.V.Dc * in.S.batch * in.V.N : 0) {
    if (in.x3) {
      const int64_t Dc = in.V.Dc, Hd = in.Hd;
      xt.emplace(max_cells, Dc, Hd);
      x3_acc_ct.resize(in.need.w1c ? Dc * Hd : 0);
      x3_acc_tc.resize(in.need.w1c ? Dc * Hd : 0);
      x3_m.resize(in.need.context ? bf16x3::Tile::padded(max_cells) * Dc : 0);
    }
  }
};

// float32 on AMX: whether the dV and dW1c GEMMs of every clean tile run in exact bf16x3
// (bf16x3.h). If so, c (Hd) is filled and, when dcontext is needed, W' packed into w.
template <typename T>
bool prepare_bf16x3(const Params<T>& P, const Split& S, int64_t Dc, int64_t Hd, BackwardNeeds need,
                    bool dv_cells_major, std::vector<float>& c, bf16x3::Weights& w) {
  if constexpr (std::is_same_v<T, float>) {
    if (!(P.finite && bf16x3::usable(Dc, Hd))) return false;
    const bool bn = P.scale != nullptr;
    c.resize(Hd);
    for (int64_t k = 0; k < Hd; ++k) c[k] = P.w2[k] * (bn ? P.scale[k] : 1.f);
    // NCHW dcontext: dV^T (Dc, cells) from the GEMM when the tile is one batch element's cells
    // (their rows are contiguous); for batched tiles of small maps (7x7), dV (cells, Dc) and a
    // strided write measured faster (Xeon/AMX, 2 threads: 1.51 vs 1.40x; 56x56: 1.30 vs 1.42x).
    const bool dv_t = !dv_cells_major && S.batch == 1;
    if (need.context) w = bf16x3::pack_weights(P.w1c, P.ldw, c.data(), Hd, Dc, dv_t);
    return w.finite;
  } else {
    return false;
  }
}

// The softmax's gradient at batch element b's cells [n0, n0 + T_), rows [j0, j0 + T_) of the
// tile: a (saved, or from the scores of z and lse) into sc.a, ds = a (t - delta) into sc.ds.
// Returns whether every ds is finite.
template <typename T>
bool softmax_grad_cells(const BackwardInputs<T>& in, BackwardScratch<T>& sc, const TileView<T>& tv, const T* zt,
                        int64_t T_, int64_t b, int64_t n0, int64_t j0) {
  const int64_t N = in.V.N, Dc = in.V.Dc, Hd = in.Hd;
  T* at_ = sc.a.data() + j0;
  T* dst = sc.ds.data() + j0;
  T* tt = sc.tt.data();
  if (in.a_saved != nullptr) {
    std::copy(in.a_saved + b * N + n0, in.a_saved + b * N + n0 + T_, at_);
  } else {
    tile_scores(in.P, in.P.u + b * Hd, zt, T_, Hd, sc.s.data());
    for (int64_t j = 0; j < T_; ++j) at_[j] = std::exp(sc.s[j] - in.lse[b]);
  }
  T d;
  if (in.t_pre != nullptr) {
    std::copy(in.t_pre + b * N + n0, in.t_pre + b * N + n0 + T_, tt);
    d = in.delta[b];
  } else {
    // attn given and the whole of b is this tile (T_ == N)
    tile_gv(tv, in.gp + b * Dc, T_, Dc, tt);
    for (int64_t j = 0; j < T_; ++j) tt[j] += in.ga[b * N + n0 + j];
    double acc = 0;
    for (int64_t j = 0; j < T_; ++j) acc += double(at_[j]) * double(tt[j]);
    d = T(acc) - in.glse[b];
  }
  bool finite = true;
  for (int64_t j = 0; j < T_; ++j) {
    dst[j] = at_[j] * (tt[j] - d);
    finite = finite && std::isfinite(dst[j]);
  }
  return finite;
}

// Back through the hidden layer at the same cells: z (T_, Hd) -> dz (T_, Hd) (dzt may be zt),
// given sc.ds; the tile's sums of dw2, dgamma, dbeta into the group's double partials and of du
// into du_it (Hd).
template <typename T>
void hidden_grad_cells(const BackwardInputs<T>& in, BackwardScratch<T>& sc, const T* zt, T* dzt, int64_t T_,
                       int64_t b, int64_t j0, double* du_it) {
  const int64_t Hd = in.Hd;
  const T* sums = sc.sums.data();
  // tile sums in T, then into the double accumulators.
  tile_dz(in.P, in.P.u + b * Hd, sc.ds.data() + j0, zt, dzt, T_, Hd, sc.sums.data());
  for (int64_t k = 0; k < Hd; ++k) {
    sc.dw2[k] += double(sums[k]);
    du_it[k] += double(sums[3 * Hd + k]);
  }
  if (in.P.scale != nullptr) {
    for (int64_t k = 0; k < Hd; ++k) {
      sc.dgamma[k] += double(sums[Hd + k]);
      sc.dbeta[k] += double(sums[2 * Hd + k]);
    }
  }
}

// Everything of one batch element's cells [n0, n0 + T_) at row j0 of the tile but the two GEMMs:
// a and ds, the bf16x3 mask rows (before dz overwrites z), dz and the vector sums. Returns
// whether every ds is finite.
template <typename T>
bool backward_cells(const BackwardInputs<T>& in, BackwardScratch<T>& sc, const TileView<T>& tv, const T* zt,
                    T* dzt, int64_t T_, int64_t b, int64_t n0, int64_t j0, double* du_it) {
  const bool finite = softmax_grad_cells(in, sc, tv, zt, T_, b, n0, j0);
  if constexpr (std::is_same_v<T, float>) {
    if (in.x3 && finite) sc.xt->mask(zt, in.P.u + b * in.Hd, in.P.scale, in.P.shift, j0, T_);
  }
  hidden_grad_cells(in, sc, zt, dzt, T_, b, j0, du_it);
  return finite;
}

// dV of batch element b's cells [n0, n0 + T_) (tile row j0) from dz, in float32 GEMMs:
// dV_tile = dZ (T_ x Hd) W1c (Hd x Dc) + a gp^T, written in place in either layout.
template <typename T>
void dv_fp32(const BackwardInputs<T>& in, const BackwardScratch<T>& sc, const T* dzt, int64_t T_, int64_t b,
             int64_t n0, int64_t j0) {
  const int64_t Dc = in.V.Dc;
  const GradContext<T>& dctx = in.dctx;
  T* out = dv_tile(in.P, in.pk, dctx, dzt, T_, b, n0, Dc, in.Hd);
  tile_outer(out, dctx.cells_major ? Dc : dctx.N, dctx.cells_major, in.gp + b * Dc, sc.a.data() + j0, T_, Dc);
}

// The tile view's cells [j0, j0 + n) to the bf16x3 split (Y = ds v); returns whether they were
// channel-major.
template <typename T>
bool split_for_bf16x3(BackwardScratch<T>& sc, const TileView<T>& tv, int64_t j0, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    if (tv.ct) sc.xt->split_ct(tv.p, tv.ld, sc.ds.data() + j0, j0, n);
    else sc.xt->split_tc(tv.p, tv.ld, sc.ds.data());
  }
  return tv.ct;
}

// The tile's two GEMMs in bf16x3 when every ds and Y_i = ds_i v_i is finite: dW1c into the
// group's sc.x3_acc_*, dV written into dcontext. `split` hands the tile's cells to the split
// (split_for_bf16x3) and says which layout; `parts` visits the tile's (b, n0, T_, j0) for the dV
// writes. Returns whether it did them (else the caller runs the float32 GEMMs).
template <typename T, typename SplitFn, typename PartsFn>
bool bf16x3_gemms(const BackwardInputs<T>& in, BackwardScratch<T>& sc, int64_t cells, bool clean, SplitFn&& split,
                  PartsFn&& parts) {
  if constexpr (std::is_same_v<T, float>) {
    if (!in.x3 || !clean) return false;
    const int64_t Dc = in.V.Dc;
    const GradContext<T>& dctx = in.dctx;
    if (in.need.w1c) {
      const bool ct = split();
      auto& acc = ct ? sc.x3_acc_ct : sc.x3_acc_tc;
      bool& used = ct ? sc.x3_used_ct : sc.x3_used_tc;
      if (!used) std::fill(acc.begin(), acc.end(), 0.f);
      used = true;
      if (!sc.xt->add_dw1c(ct, acc.data())) return false;
    }
    if (in.need.context) {
      sc.xt->dv(in.x3_w, sc.x3_m.data());
      const bool cm = dctx.cells_major;
      // m: (cells, Dc), or (Dc, padded cells) when the weights were packed channel-major
      const int64_t mj = in.x3_w.channel_major ? 1 : Dc;
      const int64_t mc = in.x3_w.channel_major ? bf16x3::Tile::padded(cells) : 1;
      parts([&](int64_t b, int64_t n0, int64_t T_, int64_t j0) {
        T* out = dctx.data + b * dctx.sb + (cm ? n0 * Dc : n0);
        tile_dv_write(out, cm ? Dc : dctx.N, cm, sc.x3_m.data() + j0 * mj, mj, mc, sc.ds.data() + j0,
                      sc.a.data() + j0, in.gp + b * Dc, T_, Dc);
      });
    }
    return true;
  } else {
    return false;
  }
}

// Items [it, it + nb), nb > 1 whole batch elements (chunks == 1) in one tile: z of all their
// cells in one GEMM (or the saved z), each element's cells, then the tile's two GEMMs.
template <typename T>
void backward_batch_tile(const BackwardInputs<T>& in, BackwardScratch<T>& sc, int64_t it, int64_t nb, double* du) {
  const Cells<T>& V = in.V;
  const int64_t N = V.N, Dc = V.Dc, Hd = in.Hd;
  // The batch's cells as one GEMM operand: a copy unless in place. The bf16x3 path with a
  // saved z reads each element in place instead, and copies only if it falls back.
  const bool lazy = in.x3 && in.hidden != nullptr && V.layout != Layout::TC;
  TileView<T> tvb{nullptr, 0, true};
  if (!lazy) tvb = batch_view(V, it, nb, sc.vb.data(), sc.pack.data());
  auto element = [&](int64_t i) { return lazy ? tile_view(V, it + i, 0, N, sc.pack.data()) : sub_view(tvb, i * N); };
  const T* zt = in.hidden != nullptr ? in.hidden + it * N * Hd : sc.zb.data();
  if (in.hidden == nullptr) hidden_tile(in.P, in.pk, tvb, nb * N, Dc, Hd, sc.zb.data());
  if (in.x3) sc.xt->begin(nb * N);
  bool clean = true;
  for (int64_t i = 0; i < nb; ++i) {
    double* du_it = du + (it + i) * Hd;
    std::fill(du_it, du_it + Hd, 0.0);
    clean = backward_cells(in, sc, element(i), zt + i * N * Hd, sc.zb.data() + i * N * Hd, N, it + i, 0, i * N,
                           du_it) &&
            clean;
  }
  const bool done = bf16x3_gemms(
      in, sc, nb * N, clean,
      [&] {
        if (!lazy) return split_for_bf16x3(sc, tvb, 0, nb * N);
        for (int64_t i = 0; i < nb; ++i) split_for_bf16x3(sc, element(i), i * N, N);
        return true;  // tile_view of a CT or Packed layout is channel-major
      },
      [&](auto&& f) {
        for (int64_t i = 0; i < nb; ++i) f(it + i, 0, N, i * N);
      });
  if (!done) {
    if (in.need.context)
      for (int64_t i = 0; i < nb; ++i) dv_fp32(in, sc, sc.zb.data() + i * N * Hd, N, it + i, 0, i * N);
    if (in.need.w1c)
      add_dw1c_tile(lazy ? batch_view(V, it, nb, sc.vb.data(), sc.pack.data()) : tvb, sc.zb.data(), nb * N, Dc, Hd,
                    sc.dW1c);
  }
}

// Item it, a chunk of one batch element's cells, tile by tile: z (or the saved z), the cells,
// then the tile's two GEMMs.
template <typename T>
void backward_chunk(const BackwardInputs<T>& in, BackwardScratch<T>& sc, int64_t it, double* du) {
  const Split& S = in.S;
  const int64_t N = in.V.N, Dc = in.V.Dc, Hd = in.Hd;
  const int64_t b = it / S.chunks, n_begin = (it % S.chunks) * S.chunk;
  const int64_t n_end = std::min(N, n_begin + S.chunk);
  double* du_it = du + it * Hd;
  std::fill(du_it, du_it + Hd, 0.0);
  for (int64_t n0 = n_begin; n0 < n_end; n0 += S.tile) {
    const int64_t T_ = std::min(S.tile, n_end - n0);
    const auto tv = tile_view(in.V, b, n0, T_, sc.pack.data());
    const T* zt = in.hidden != nullptr ? in.hidden + (b * N + n0) * Hd : sc.z.data();
    if (in.hidden == nullptr) hidden_tile(in.P, in.pk, tv, T_, Dc, Hd, sc.z.data());
    if (in.x3) sc.xt->begin(T_);
    const bool clean = backward_cells(in, sc, tv, zt, sc.z.data(), T_, b, n0, 0, du_it);
    const bool done = bf16x3_gemms(
        in, sc, T_, clean, [&] { return split_for_bf16x3(sc, tv, 0, T_); }, [&](auto&& f) { f(b, n0, T_, 0); });
    if (!done) {
      if (in.need.context) dv_fp32(in, sc, sc.z.data(), T_, b, n0, 0);
      if (in.need.w1c) add_dw1c_tile(tv, sc.z.data(), T_, Dc, Hd, sc.dW1c);
    }
  }
}

// Group g's items into its partials: dW1c (Hd * Dc) and dw2, dgamma, dbeta (3 * Hd); du per item.
template <typename T>
void backward_group(const BackwardInputs<T>& in, BackwardScratch<T>& sc, int64_t g, double* du, T* partials,
                    double* vec_partials) {
  const Split& S = in.S;
  const int64_t Dc = in.V.Dc, Hd = in.Hd;
  sc.dW1c = partials + g * Hd * Dc;  // (Hd, Dc); the W1f part is done outside from du
  sc.dw2 = vec_partials + g * 3 * Hd;
  sc.dgamma = sc.dw2 + Hd;
  sc.dbeta = sc.dgamma + Hd;
  std::fill(sc.dW1c, sc.dW1c + Hd * Dc, T(0));
  std::fill(sc.dw2, sc.dw2 + 3 * Hd, 0.0);
  sc.x3_used_ct = sc.x3_used_tc = false;
  auto [first, last] = group_items(S, g);
  for (int64_t it = first; it < last;) {
    const int64_t nb = std::min(S.batch, last - it);
    if (nb > 1) {  // items are whole batch elements (chunks == 1), each a single tile
      backward_batch_tile(in, sc, it, nb, du);
      it += nb;
    } else {
      backward_chunk(in, sc, it, du);
      ++it;
    }
  }
  if constexpr (std::is_same_v<T, float>) {
    if (sc.x3_used_ct) bf16x3::scale_add_dw1c(sc.x3_acc_ct.data(), true, in.x3_c, Hd, Dc, sc.dW1c);
    if (sc.x3_used_tc) bf16x3::scale_add_dw1c(sc.x3_acc_tc.data(), false, in.x3_c, Hd, Dc, sc.dW1c);
  }
}

template <typename T>
void backward_kernel(const Cells<T>& V, const Params<T>& P, int64_t B, int64_t Hd, const Split& S,
                     const T* gp /* (B, Dc) */, const T* ga /* (B, N) */, const T* glse /* (B) */,
                     const T* lse /* (B) */, SoftmaxGrad sg,
                     const T* hidden /* (B, N, Hd): z saved by the forward, or nullptr: recompute */,
                     BackwardNeeds need, GradContext<T> dctx, double* du /* (items, Hd) */,
                     T* partials /* (groups, Hd * Dc) */, double* vec_partials /* (groups, 3 * Hd) */) {
  const int64_t N = V.N, Dc = V.Dc;
  const T* delta = static_cast<const T*>(sg.delta);
  const T* t_pre = static_cast<const T*>(sg.t);
  // With saved attn, a batch element in one tile forms delta inside its step; else a pre-pass.
  if (t_pre != nullptr)
    softmax_grad_prepass(V, S, B, gp, ga, static_cast<const T*>(sg.attn_delta), glse, static_cast<T*>(sg.t),
                         static_cast<T*>(sg.delta));
  const W1cPacks pk = make_packs(P, S, N, Dc, Hd, need.context, dctx.cells_major);
  // float32 on AMX: the dV and dW1c GEMMs of every clean tile in exact bf16x3 (bf16x3.h, docs/gla.md X1-X3).
  std::vector<float> x3_c;
  bf16x3::Weights x3_w;
  const bool x3 = prepare_bf16x3(P, S, Dc, Hd, need, dctx.cells_major, x3_c, x3_w);
  const BackwardInputs<T> in{V, P, S, Hd, gp, ga, glse, lse, static_cast<const T*>(sg.attn), t_pre, delta, hidden,
                             need, dctx, pk, x3, x3_c.data(), x3_w};
  const int64_t max_cells = S.batch > 1 ? S.batch * N : S.tile;
  at::parallel_for(0, S.groups, 1, [&](int64_t g0, int64_t g1) {
    BackwardScratch<T> sc(in, max_cells);
    for (int64_t g = g0; g < g1; ++g) backward_group(in, sc, g, du, partials, vec_partials);
    if (x3) bf16x3::Tile::release();
  });
}
}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> gla_forward_cpu(
    const at::Tensor& face, const at::Tensor& context, const at::Tensor& w1, const at::Tensor& b1,
    const at::Tensor& w2, const at::Tensor& b2, const c10::optional<at::Tensor>& hidden_scale,
    const c10::optional<at::Tensor>& hidden_shift, bool save_hidden) {
  const auto d = check_gla_args(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift,
                                c10::DeviceType::CPU);
  const auto ct = compute_type(context.scalar_type());
  const auto opts = context.options().dtype(ct);
  // The four results are the only ATen calls (host_cpu.h).
  auto pooled = at::empty({d.B, d.Dc}, context.options());
  auto attn = at::empty({d.B, d.H, d.W}, context.options());
  auto lse = at::empty({d.B}, opts);
  auto hidden = save_hidden ? at::empty({d.B, d.N, d.Hd}, opts) : at::empty({0}, opts);
  if (d.B > 0) {
    AT_DISPATCH_FLOATING_TYPES(ct, "gla_forward_cpu", [&] {
      host_cpu::Temps tmp;
      const auto P = host_cpu::params<scalar_t>(face, w1, b1, w2, b2, hidden_scale, hidden_shift, d, tmp);
      auto V = describe_cells<scalar_t>(context);
      auto S = make_split(d.B, d.N, d.Dc, d.Hd, sizeof(scalar_t));
      scalar_t* pooled_p = host_cpu::target<scalar_t>(pooled, tmp);
      scalar_t* attn_p = host_cpu::target<scalar_t>(attn, tmp);
      forward_kernel<scalar_t>(V, P, d.B, d.Hd, S, pooled_p, attn_p, lse.data_ptr<scalar_t>(),
                               save_hidden ? hidden.data_ptr<scalar_t>() : nullptr);
      host_cpu::emit(pooled, pooled_p);
      host_cpu::emit(attn, attn_p);
    });
  }
  return {pooled, attn, lse, hidden};
}

namespace {
// The op's 8 gradients (an empty (0,) tensor where not needed) from the kernel's results in the
// compute type: dface = dU W1f, dW1 = [dU^T face, sum of the groups' dW1c], db1 = sum_b dU,
// db2 = sum_b g_lse (scores are shift invariant inside the softmax; "+ 0 * sum(dU)" keeps db2
// non-finite where the other gradients are, as PyTorch's would be), dw2 / dgamma / dbeta from
// the groups' per-unit sums. Fixed-order loops: chunks of each b, then groups.
template <typename T>
host::Grads assemble_grads_cpu(const at::Tensor& face, const at::Tensor& context, const at::Tensor& w1,
                               const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2,
                               const c10::optional<at::Tensor>& scale, const c10::optional<at::Tensor>& shift,
                               const GlaDims& d, const gla_tiles::Params<T>& P, const Split& S, const T* glse,
                               const double* du, const T* partials, const double* vec_partials, const at::Tensor& dctx,
                               const T* dctx_p, const std::array<bool, 8>& needs, host_cpu::Temps& tmp) {
  auto none = [&] { return at::empty({0}, context.options()); };
  auto like = [&](const at::Tensor& t, bool n) { return n ? at::empty(t.sizes(), t.options()) : none(); };
  const bool bn = scale.has_value();
  at::Tensor g_face = like(face, needs[0]), g_w1 = like(w1, needs[2]), g_b1 = like(b1, needs[3]);
  at::Tensor g_w2 = like(w2, needs[4]), g_b2 = like(b2, needs[5]);
  at::Tensor g_scale = bn ? like(*scale, needs[6]) : none(), g_shift = bn ? like(*shift, needs[7]) : none();
  T* dU = tmp.take<T>(d.B * d.Hd);  // dL/du (B, Hd)
  for (int64_t b = 0; b < d.B; ++b) {
    for (int64_t k = 0; k < d.Hd; ++k) {
      double acc = 0;
      for (int64_t c = 0; c < S.chunks; ++c) acc += du[(b * S.chunks + c) * d.Hd + k];
      dU[b * d.Hd + k] = static_cast<T>(acc);
    }
  }
  const int64_t ldw = d.Df + d.Dc;
  if (needs[0]) {  // dface^T (Df x B) = W1f^T (Df x Hd) dU^T (Hd x B), column-major
    T* out = host_cpu::target<T>(g_face, tmp);
    gemm<T>(false, false, d.Df, d.B, d.Hd, T(1), P.w1c - d.Df, ldw, dU, d.Hd, T(0), out, d.Df);
    host_cpu::emit(g_face, out);
  }
  if (needs[2]) {
    T* out = host_cpu::target<T>(g_w1, tmp);
    // dW1f^T (Df x Hd, ld Df + Dc) = face^T (Df x B) dU (B x Hd), column-major
    gemm<T>(false, true, d.Df, d.Hd, d.B, T(1), host_cpu::as_compute<T>(face, tmp), d.Df, dU, d.Hd, T(0), out, ldw);
    for (int64_t k = 0; k < d.Hd; ++k) {
      T* row = out + k * ldw + d.Df;
      std::copy(partials + k * d.Dc, partials + (k + 1) * d.Dc, row);
      for (int64_t g = 1; g < S.groups; ++g) {
        const T* part = partials + g * d.Hd * d.Dc + k * d.Dc;
        for (int64_t c = 0; c < d.Dc; ++c) row[c] += part[c];
      }
    }
    host_cpu::emit(g_w1, out);
  }
  if (needs[3]) {
    T* out = host_cpu::target<T>(g_b1, tmp);
    for (int64_t k = 0; k < d.Hd; ++k) {
      T acc = 0;
      for (int64_t b = 0; b < d.B; ++b) acc += dU[b * d.Hd + k];
      out[k] = acc;
    }
    host_cpu::emit(g_b1, out);
  }
  if (needs[5]) {
    T s = 0, z = 0;
    for (int64_t b = 0; b < d.B; ++b) s += glse[b];
    for (int64_t i = 0; i < d.B * d.Hd; ++i) z += dU[i];
    T* out = host_cpu::target<T>(g_b2, tmp);
    out[0] = s + z * T(0);
    host_cpu::emit(g_b2, out);
  }
  const std::array<at::Tensor*, 3> vec_out{&g_w2, &g_scale, &g_shift};
  const std::array<bool, 3> vec_need{needs[4], bn && needs[6], bn && needs[7]};
  for (int v = 0; v < 3; ++v) {
    if (!vec_need[v]) continue;
    T* out = host_cpu::target<T>(*vec_out[v], tmp);
    for (int64_t k = 0; k < d.Hd; ++k) {
      double acc = vec_partials[v * d.Hd + k];
      for (int64_t g = 1; g < S.groups; ++g) acc += vec_partials[g * 3 * d.Hd + v * d.Hd + k];
      out[k] = static_cast<T>(acc);
    }
    host_cpu::emit(*vec_out[v], out);
  }
  at::Tensor g_ctx = needs[1] ? dctx : none();
  if (needs[1]) host_cpu::emit(g_ctx, dctx_p);
  return {g_face, g_ctx, g_w1, g_b1, g_w2, g_b2, g_scale, g_shift};
}
}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
           at::Tensor>
gla_backward_cpu(const c10::optional<at::Tensor>& grad_pooled, const c10::optional<at::Tensor>& grad_attn,
                 const c10::optional<at::Tensor>& grad_lse, const at::Tensor& face, const at::Tensor& context,
                 const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
                 const at::Tensor& b2, const c10::optional<at::Tensor>& hidden_scale,
                 const c10::optional<at::Tensor>& hidden_shift, const at::Tensor& pooled,
                 const at::Tensor& attn, const at::Tensor& lse,
                 const c10::optional<at::Tensor>& hidden, std::array<bool, 8> needs_grad) {
  const auto d = check_gla_args(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift,
                                c10::DeviceType::CPU);
  check_gla_backward_args(d, grad_pooled, grad_attn, grad_lse, attn, lse);
  const bool saved_z = hidden.has_value() && hidden->numel() > 0;
  if (saved_z) {
    TORCH_CHECK(hidden->sizes() == at::IntArrayRef({d.B, d.N, d.Hd}) && hidden->is_contiguous() &&
                    hidden->scalar_type() == compute_type(context.scalar_type()),
                "glamor_fast: `hidden` must be the forward's contiguous (B, N, Hd) = (", d.B, ", ",
                d.N, ", ", d.Hd, ") tensor of dtype ", compute_type(context.scalar_type()), ", got ",
                hidden->sizes(), " ", hidden->scalar_type());
  }
  const auto st = context.scalar_type();
  const auto ct = compute_type(st);
  const bool need_ctx = needs_grad[1], need_w1 = needs_grad[2];
  const bool need_any = std::any_of(needs_grad.begin(), needs_grad.end(), [](bool x) { return x; });
  if (!need_any || d.B == 0) {
    return host::zero_grads(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift, needs_grad);
  }
  // dcontext in the layout the kernel writes directly: channels_last stays channels_last.
  const at::Tensor dctx = need_ctx ? host::empty_grad_context(context, d, st) : at::Tensor();
  host::Grads grads;
  AT_DISPATCH_FLOATING_TYPES(ct, "gla_backward_cpu", [&] {
    using T = scalar_t;
    host_cpu::Temps tmp;
    const auto P = host_cpu::params<T>(face, w1, b1, w2, b2, hidden_scale, hidden_shift, d, tmp);
    // Missing output gradients are zeros (autograd passes None for outputs that got none).
    auto grad_or_zeros = [&](const c10::optional<at::Tensor>& g, int64_t n) -> const T* {
      if (g.has_value()) return host_cpu::as_compute<T>(*g, tmp);
      T* z = tmp.take<T>(n);
      std::fill(z, z + n, T(0));
      return z;
    };
    const T* gp = grad_or_zeros(grad_pooled, d.B * d.Dc);
    const T* ga = grad_or_zeros(grad_attn, d.B * d.N);
    const T* glse = grad_or_zeros(grad_lse, d.B);
    const T* lse_c = host_cpu::as_compute<T>(lse, tmp);
    // The kernel forms delta from attn and the per-cell terms ds uses (exact zeros; see
    // SoftmaxGrad). 16-bit: ds recomputes a in float32, delta uses the rounded attn.
    const bool a_saved = st == ct;
    const T* a_c = host_cpu::as_compute<T>(attn, tmp);
    T* delta = tmp.take<T>(d.B);
    auto V = describe_cells<T>(context);
    auto S = make_split(d.B, d.N, d.Dc, d.Hd, sizeof(T));
    double* du = tmp.take<double>(S.items * d.Hd);
    T* partials = tmp.take<T>(S.groups * d.Hd * d.Dc);
    double* vec_partials = tmp.take<double>(S.groups * 3 * d.Hd);
    BackwardNeeds need{need_ctx, need_w1};
    const bool dv_ct = !need_ctx || dctx.is_contiguous();
    const bool whole_b = S.chunks == 1 && S.tile >= d.N;  // every b in one tile
    T* t_pre = !a_saved || !whole_b ? tmp.take<T>(d.B * d.N) : nullptr;
    SoftmaxGrad sg{a_saved ? a_c : nullptr, a_c, t_pre, delta};
    T* dctx_p = need_ctx ? host_cpu::target<T>(dctx, tmp) : nullptr;
    backward_kernel<T>(V, P, d.B, d.Hd, S, gp, ga, glse, lse_c, sg,
                       saved_z ? hidden->data_ptr<T>() : nullptr, need,
                       GradContext<T>{dctx_p, need_ctx ? dctx.stride(0) : 0, !dv_ct, d.N}, du, partials,
                       vec_partials);
    grads = assemble_grads_cpu<T>(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift, d, P, S, glse, du,
                                  partials, vec_partials, dctx, dctx_p, needs_grad, tmp);
  });
  return grads;
}

TORCH_LIBRARY_IMPL(glamor_fast, CPU, m) {
  m.impl("gla_forward", &gla_forward_cpu);
  m.impl("gla_backward", &gla_backward_cpu);
}

}  // namespace cpu
}  // namespace glamor_fast
