// Fused CPU forward and backward of the GLA op (maths: /work/shared/design/gla-math.md).
//
// Work is split into items (b, chunk of cells); items are grouped into one group per thread
// (fixed for a fixed thread count, hence deterministic). Each item walks its cells in tiles:
// the hidden tile Z = V_tile W1c^T (+ u) is one small GEMM into a thread-local buffer that stays
// in cache, then bias, ReLU, optional folded BN, score, online softmax and the weighted sum are
// done on it before the next tile. Nothing of size (B, N, Hd) is ever allocated.
// When N is small (7x7), the tile is several whole batch elements (Split::batch) so that the
// GEMMs are larger; W1c, an operand of every tile GEMM, is packed once per call (MKL pack API).
// float16/bfloat16 inputs are converted to float32 at the boundary and the results back.
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

#include "../gla_checks.h"
#include "../gla_host.h"
#include "gla_bf16x3.h"

namespace glamor_fast {
namespace cpu {
namespace {

// ---------------------------------------------------------------------------------------------
// GEMM: column-major C (m x n) = alpha op(A) op(B) + beta C, single-threaded (called per tile).
// torch's CPU library carries a Fortran BLAS (MKL or OpenBLAS); we call its sgemm_/dgemm_ found
// at run time, and fall back to at::mm_out on tensor views when it is absent (or when
// GLAMOR_FAST_GEMM=aten, which bench/ uses to compare the two).
using sgemm_fn = void (*)(const char*, const char*, const int*, const int*, const int*,
                          const float*, const float*, const int*, const float*, const int*,
                          const float*, float*, const int*);
using dgemm_fn = void (*)(const char*, const char*, const int*, const int*, const int*,
                          const double*, const double*, const int*, const double*, const int*,
                          const double*, double*, const int*);

// MKL's packed-GEMM API (float only): W1c is an operand of every tile's GEMMs, so it is packed
// into MKL's internal layout once per call instead of being re-packed by every sgemm_ call.
// Enum values are those of mkl_cblas.h; MKL_INT is int (LP64, as for sgemm_).
using pack_size_fn = size_t (*)(int identifier, int m, int n, int k);
using pack_fn = void (*)(int layout, int identifier, int trans, int m, int n, int k, float alpha,
                         const float* src, int ld, float* dest);
using compute_fn = void (*)(int layout, int transa, int transb, int m, int n, int k, const float* a,
                            int lda, const float* b, int ldb, float beta, float* c, int ldc);
constexpr int kColMajor = 102, kNoTrans = 111, kTrans = 112, kPacked = 151, kAMatrix = 161,
              kBMatrix = 162;

struct Blas {
  sgemm_fn sgemm = nullptr;
  dgemm_fn dgemm = nullptr;
  pack_size_fn pack_size = nullptr;
  pack_fn pack = nullptr;
  compute_fn compute = nullptr;
  bool can_pack() const { return pack_size && pack && compute; }
};

const Blas& blas() {
  static const Blas found = [] {
    Blas b;
    const char* force = std::getenv("GLAMOR_FAST_GEMM");
    if (force != nullptr && std::string(force) == "aten") return b;
    void* handle = dlopen("libtorch_cpu.so", RTLD_NOW | RTLD_NOLOAD);
    void* scope = handle != nullptr ? handle : RTLD_DEFAULT;
    b.sgemm = reinterpret_cast<sgemm_fn>(dlsym(scope, "sgemm_"));
    b.dgemm = reinterpret_cast<dgemm_fn>(dlsym(scope, "dgemm_"));
    // MKL's packed API (GLAMOR_FAST_GEMM=pack) reuses one packed W1c across tiles: about 5%
    // faster at 1 thread, no measurable change at 2, but MKL's packed buffers take ~4 MB each
    // (12 MB extra at the paper's shapes, which broke the peak-memory bar), so it is opt-in.
    if (b.sgemm != nullptr && force != nullptr && std::string(force) == "pack") {
      b.pack_size = reinterpret_cast<pack_size_fn>(dlsym(scope, "cblas_sgemm_pack_get_size"));
      b.pack = reinterpret_cast<pack_fn>(dlsym(scope, "cblas_sgemm_pack"));
      b.compute = reinterpret_cast<compute_fn>(dlsym(scope, "cblas_sgemm_compute"));
    }
    return b;
  }();
  return found;
}

template <typename T>
void gemm_aten(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
               const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  // Views with the strides of column-major storage; op() by swapping strides.
  auto A = ta ? at::from_blob(const_cast<T*>(a), {m, k}, {lda, 1}, opts)
              : at::from_blob(const_cast<T*>(a), {m, k}, {1, lda}, opts);
  auto Bm = tb ? at::from_blob(const_cast<T*>(b), {k, n}, {ldb, 1}, opts)
               : at::from_blob(const_cast<T*>(b), {k, n}, {1, ldb}, opts);
  auto C = at::from_blob(c, {m, n}, {1, ldc}, opts);
  if (beta == T(0)) {
    at::mm_out(C, A, Bm);
    if (alpha != T(1)) C.mul_(alpha);
  } else {
    at::addmm_out(C, C, A, Bm, beta, alpha);
  }
}

template <typename T>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
          const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  // BLAS wants ld >= rows of the stored matrix even where a single column makes it unused.
  lda = std::max<int64_t>(lda, std::max<int64_t>(1, ta ? k : m));
  ldb = std::max<int64_t>(ldb, std::max<int64_t>(1, tb ? n : k));
  ldc = std::max<int64_t>(ldc, std::max<int64_t>(1, m));
  const char tra = ta ? 'T' : 'N', trb = tb ? 'T' : 'N';
  const int im = m, in = n, ik = k, ilda = lda, ildb = ldb, ildc = ldc;
  if constexpr (std::is_same_v<T, float>) {
    if (blas().sgemm) {
      blas().sgemm(&tra, &trb, &im, &in, &ik, &alpha, a, &ilda, b, &ildb, &beta, c, &ildc);
      return;
    }
  } else {
    if (blas().dgemm) {
      blas().dgemm(&tra, &trb, &im, &in, &ik, &alpha, a, &ilda, b, &ildb, &beta, c, &ildc);
      return;
    }
  }
  gemm_aten<T>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// ---------------------------------------------------------------------------------------------
// How the cells of one batch element are read. CT: cell j of channel c at p[c * ld + j] (NCHW);
// TC: at p[j * ld + c] (channels_last). Both are read in place (the GEMMs take either through a
// transpose flag, at the same speed: measured with MKL, 36 us for 49 x 256 x 128 either way).
// Any other strides are packed per tile into a thread-local CT buffer of Dc x tile elements.
enum class Layout { CT, TC, Packed };

template <typename T>
struct Cells {
  const T* base;  // context data pointer
  int64_t sb, sc, sh, sw, W, N, Dc;
  Layout layout;
  int64_t ld;  // for CT / TC
};

template <typename T>
Cells<T> describe_cells(const at::Tensor& context) {
  Cells<T> v;
  v.base = context.data_ptr<T>();
  v.sb = context.stride(0);
  v.sc = context.stride(1);
  v.sh = context.stride(2);
  v.sw = context.stride(3);
  v.W = context.size(3);
  v.N = context.size(2) * context.size(3);
  v.Dc = context.size(1);
  // One stride sn walks all cells when rows follow each other (or there is one row / column).
  int64_t sn = -1;
  if (context.size(2) == 1) sn = v.sw;
  else if (v.W == 1) sn = v.sh;
  else if (v.sh == v.W * v.sw) sn = v.sw;
  if (sn == 1 && (v.sc >= v.N || v.Dc == 1)) {
    v.layout = Layout::CT;
    v.ld = std::max(v.sc, v.N);
  } else if (v.sc == 1 && sn >= 1 && (sn >= v.Dc || v.N == 1)) {
    v.layout = Layout::TC;
    v.ld = std::max(sn, v.Dc);
  } else {
    v.layout = Layout::Packed;
    v.ld = 0;
  }
  return v;
}

// A tile of T_ cells from cell n0 of batch b: pointer, leading dimension, CT or TC.
template <typename T>
struct TileView {
  const T* p;
  int64_t ld;
  bool ct;
  T at(int64_t c, int64_t j) const { return ct ? p[c * ld + j] : p[j * ld + c]; }
};

template <typename T>
TileView<T> tile_view(const Cells<T>& v, int64_t b, int64_t n0, int64_t T_, T* pack) {
  const T* base = v.base + b * v.sb;
  if (v.layout == Layout::CT) return {base + n0, v.ld, true};
  if (v.layout == Layout::TC) return {base + n0 * v.ld, v.ld, false};
  for (int64_t c = 0; c < v.Dc; ++c) {
    const T* src = base + c * v.sc;
    T* dst = pack + c * T_;
    for (int64_t j = 0; j < T_; ++j) {
      const int64_t n = n0 + j;
      dst[j] = src[(n / v.W) * v.sh + (n % v.W) * v.sw];
    }
  }
  return {pack, T_, true};
}

// All N cells of batch elements b0 .. b0 + nb - 1 as one tile of nb * N cells: read in place when
// they are uniformly strided (contiguous channels_last), else copied to a CT buffer (Dc x nb N).
template <typename T>
bool batch_in_place(const Cells<T>& v) {
  return v.layout == Layout::TC && v.sb == v.N * v.ld;
}

template <typename T>
TileView<T> batch_view(const Cells<T>& v, int64_t b0, int64_t nb, T* buf /* (Dc, nb * N) */, T* pack /* (Dc, N) */) {
  if (batch_in_place(v)) return {v.base + b0 * v.sb, v.ld, false};
  const int64_t N = v.N, ld = nb * N;
  for (int64_t i = 0; i < nb; ++i) {
    const auto tv = tile_view(v, b0 + i, 0, N, pack);
    for (int64_t c = 0; c < v.Dc; ++c) {
      T* dst = buf + c * ld + i * N;
      if (tv.ct) {
        std::copy(tv.p + c * tv.ld, tv.p + c * tv.ld + N, dst);
      } else {
        for (int64_t j = 0; j < N; ++j) dst[j] = tv.p[j * tv.ld + c];
      }
    }
  }
  return {buf, ld, true};
}

// Cells [j0, j0 + T_) of a tile view.
template <typename T>
TileView<T> sub_view(const TileView<T>& tv, int64_t j0) {
  return tv.ct ? TileView<T>{tv.p + j0, tv.ld, true} : TileView<T>{tv.p + j0 * tv.ld, tv.ld, false};
}

// ---------------------------------------------------------------------------------------------
// The split of the B x N cells into items and of the items into groups (one per thread).
struct Split {
  int64_t chunks;   // chunks of cells per batch element
  int64_t chunk;    // cells per chunk (a multiple of the tile, except the last)
  int64_t items;    // B * chunks
  int64_t groups;   // <= threads
  int64_t tile;     // cells per tile
  int64_t batch;    // whole batch elements per tile GEMM (> 1 only when chunks == 1 and N is small)
};

Split make_split(int64_t B, int64_t N, int64_t Dc, int64_t Hd, size_t elem) {
  Split s;
  // Keep the hidden tile and the V tile (Hd + Dc) x tile near 192 KiB: inside L2.
  int64_t tile = (192 * 1024) / (int64_t(elem) * (Hd + Dc));
  tile = std::max<int64_t>(16, std::min<int64_t>(256, tile / 16 * 16));
  s.tile = std::min(tile, N);
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  s.chunks = 1;
  if (B % threads != 0 && B < 8 * threads) {
    // Too few (or unevenly many) batch elements: split the cells too, to about 4 items/thread.
    const int64_t want = (4 * threads + B - 1) / B;
    const int64_t max_chunks = std::max<int64_t>(1, N / std::max<int64_t>(s.tile, 32));
    s.chunks = std::max<int64_t>(1, std::min(want, max_chunks));
  }
  s.chunk = (N + s.chunks - 1) / s.chunks;
  s.chunk = (s.chunk + s.tile - 1) / s.tile * s.tile;
  s.chunks = (N + s.chunk - 1) / s.chunk;
  s.items = B * s.chunks;
  s.groups = std::min<int64_t>(threads, s.items);
  // Small N (e.g. 7x7): the tile GEMMs of several consecutive batch elements are done as one,
  // of about kBatchCells cells. With MKL (1 thread, this paper shape), 256 GEMMs of 49 cells took
  // 11.6 ms against 10.2 ms for 64 of 196 cells; 128 to 1024 cells measured the same.
  constexpr int64_t kBatchCells = 256;
  s.batch = (s.chunks == 1 && N <= s.tile && 2 * N <= kBatchCells) ? kBatchCells / N : 1;
  return s;
}

// Items [first, last) of group g (contiguous, fixed for a fixed thread count).
inline std::pair<int64_t, int64_t> group_items(const Split& s, int64_t g) {
  return {g * s.items / s.groups, (g + 1) * s.items / s.groups};
}

template <typename T>
struct Params {
  const T* w1c;    // w1 + Df: W1c(k, c) = w1c[k * ldw + c]
  int64_t ldw;
  const T* w1c_t;  // (Dc, Hd) contiguous: W1c(k, c) = w1c_t[c * Hd + k]
  const T* u;      // (B, Hd): W1f f + b1
  const T* w2;     // (Hd)
  T b2;
  const T* scale;  // (Hd) or nullptr
  const T* shift;  // (Hd) or nullptr
  bool finite;     // w2, scale, shift all finite (the backward's fast masks are then exact)
};

// W1c packed by MKL for the tile GEMMs (float with MKL only; otherwise empty and unused).
// A packed operand is only valid for the (m, n, k) it was packed for, so there is one per
// distinct tile length: the full tile, the shorter last tile of an item, and the batched tile
// (Split::batch * N); other lengths (a group's last, shorter batch) use plain sgemm_.
// Packing costs about one tile GEMM's copy of W1c, and saves it on every tile.
enum PackUse { kPackZ = 0, kPackDV = 1 };

struct W1cPacks {
  int64_t len[3] = {-1, -1, -1};
  at::Tensor buf[3][2];  // [tile length slot][PackUse], bytes

  template <typename T>
  const float* find(PackUse use, int64_t T_) const {
    if constexpr (!std::is_same_v<T, float>) return nullptr;
    for (int i = 0; i < 3; ++i)
      if (len[i] == T_ && buf[i][use].defined()) return reinterpret_cast<const float*>(buf[i][use].data_ptr());
    return nullptr;
  }
};

// Packs W1c for the z GEMM (A of Hd x T x Dc, from w1c_t) and, if dv, for the dV GEMM:
// A of Dc x T x Hd (channels_last dV) or B of T x Dc x Hd (NCHW dV), from w1c.
template <typename T>
W1cPacks make_packs(const Params<T>& P, const Split& S, int64_t N, int64_t Dc, int64_t Hd, bool dv,
                    bool dv_cells_major) {
  W1cPacks pk;
  if constexpr (std::is_same_v<T, float>) {
    const Blas& bl = blas();
    if (!bl.can_pack() || Hd == 0 || Dc == 0 || S.tile <= 0) return pk;
    const int64_t last_len = N - (S.chunks - 1) * S.chunk;
    const int64_t lens[3] = {S.tile, last_len % S.tile, S.batch > 1 ? S.batch * N : 0};
    const int hd = Hd, dc = Dc;
    for (int i = 0; i < 3; ++i) {
      const int t = lens[i];
      if (t <= 0 || (i >= 1 && t == lens[0]) || (i == 2 && t == lens[1])) continue;
      pk.len[i] = t;
      auto bytes = [](size_t n) { return at::empty({int64_t(n)}, at::TensorOptions().dtype(at::kByte)); };
      pk.buf[i][kPackZ] = bytes(bl.pack_size(kAMatrix, hd, t, dc));
      bl.pack(kColMajor, kAMatrix, kNoTrans, hd, t, dc, 1.f, P.w1c_t, hd,
              reinterpret_cast<float*>(pk.buf[i][kPackZ].data_ptr()));
      if (!dv) continue;
      const int ldw = P.ldw;
      if (dv_cells_major) {
        pk.buf[i][kPackDV] = bytes(bl.pack_size(kAMatrix, dc, t, hd));
        bl.pack(kColMajor, kAMatrix, kNoTrans, dc, t, hd, 1.f, P.w1c, ldw,
                reinterpret_cast<float*>(pk.buf[i][kPackDV].data_ptr()));
      } else {
        pk.buf[i][kPackDV] = bytes(bl.pack_size(kBMatrix, t, dc, hd));
        bl.pack(kColMajor, kBMatrix, kTrans, t, dc, hd, 1.f, P.w1c, ldw,
                reinterpret_cast<float*>(pk.buf[i][kPackDV].data_ptr()));
      }
    }
  }
  return pk;
}

// z (T_, Hd) row-major = V_tile (T_, Dc) W1c^T, as a column-major (Hd x T_) GEMM. This output
// orientation measured ~15% faster than (T_ x Hd) column-major with MKL.
template <typename T>
void hidden_tile(const Params<T>& P, const W1cPacks& pk, const TileView<T>& tv, int64_t T_, int64_t Dc,
                 int64_t Hd, T* z) {
  if constexpr (std::is_same_v<T, float>) {
    if (const float* a = pk.find<T>(kPackZ, T_)) {
      blas().compute(kColMajor, kPacked, tv.ct ? kTrans : kNoTrans, Hd, T_, Dc, a, Hd, tv.p,
                     std::max<int64_t>(tv.ld, 1), 0.f, z, Hd);
      return;
    }
  }
  gemm<T>(false, tv.ct, Hd, T_, Dc, T(1), P.w1c_t, Hd, tv.p, tv.ld, T(0), z, Hd);
}

// ---------------------------------------------------------------------------------------------
// Elementwise tile loops. Each is an always-inline template plus float / double wrappers that
// GCC compiles twice on x86-64 (AVX2+FMA and baseline) and picks at load time, so the build
// stays portable while the loops use the wide vectors of the machine they run on.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define GLAMOR_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define GLAMOR_SIMD_CLONES
#endif
#define GLAMOR_INLINE __attribute__((always_inline)) inline

// s[j] = b2 + sum_k w2_k h(z[j * Hd + k] + u_k) for the T_ cells of a tile.
template <typename T>
GLAMOR_INLINE void scores_impl(const Params<T>& P, const T* u, const T* z, int64_t T_, int64_t Hd, T* s) {
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
GLAMOR_INLINE void pool_impl(const TileView<T>& tv, const T* p, int64_t T_, int64_t Dc, T rescale, T* acc) {
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
GLAMOR_INLINE void gv_impl(const TileView<T>& tv, const T* gp, int64_t T_, int64_t Dc, T* gv) {
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
// accumulators.
template <bool Clean, typename T>
GLAMOR_INLINE void dz_loop(const Params<T>& P, const T* u, const T* ds, const T* z, T* dzo, int64_t T_,
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
GLAMOR_INLINE void dz_impl(const Params<T>& P, const T* u, const T* ds, const T* z, T* dzo, int64_t T_,
                           int64_t Hd, T* sums) {
  bool clean = P.finite;
  for (int64_t j = 0; j < T_ && clean; ++j) clean = std::isfinite(ds[j]);
  if (clean) dz_loop<true>(P, u, ds, z, dzo, T_, Hd, sums);
  else dz_loop<false>(P, u, ds, z, dzo, T_, Hd, sums);
}

// out += gp a^T for a dV tile: cells_major out[j * ld + c], else out[c * ld + j].
template <typename T>
GLAMOR_INLINE void outer_impl(T* out, int64_t ld, bool cells_major, const T* gp, const T* a, int64_t T_, int64_t Dc) {
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
GLAMOR_INLINE void dv_write_impl(T* out, int64_t ld, bool cells_major, const T* m, int64_t mj, int64_t mc,
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

// Hidden statistics: s1 = sum_j h_j, s2 = sum_j h_j^2 with h = relu(z_j + u) (NaN stays NaN).
template <typename T>
GLAMOR_INLINE void hidden_sums_impl(const T* z, const T* u, int64_t T_, int64_t Hd, T* s1, T* s2) {
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
GLAMOR_INLINE void hidden_dz_impl(T* z, const T* u, const T* alpha, const T* beta, int64_t T_, int64_t Hd, T* sums) {
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

#define GLAMOR_TILE_LOOPS(T)                                                                        \
  GLAMOR_SIMD_CLONES void tile_scores(const Params<T>& P, const T* u, const T* z, int64_t T_,       \
                                      int64_t Hd, T* s) {                                          \
    scores_impl<T>(P, u, z, T_, Hd, s);                                                            \
  }                                                                                                \
  GLAMOR_SIMD_CLONES void tile_pool(const TileView<T>& tv, const T* p, int64_t T_, int64_t Dc,     \
                                    T rescale, T* acc) {                                           \
    pool_impl<T>(tv, p, T_, Dc, rescale, acc);                                                     \
  }                                                                                                \
  GLAMOR_SIMD_CLONES void tile_gv(const TileView<T>& tv, const T* gp, int64_t T_, int64_t Dc,      \
                                  T* gv) {                                                         \
    gv_impl<T>(tv, gp, T_, Dc, gv);                                                                \
  }                                                                                                \
  GLAMOR_SIMD_CLONES void tile_dz(const Params<T>& P, const T* u, const T* ds, const T* z, T* dz, \
                                  int64_t T_, int64_t Hd, T* sums) {                               \
    dz_impl<T>(P, u, ds, z, dz, T_, Hd, sums);                                                     \
  }                                                                                                \
  GLAMOR_SIMD_CLONES void tile_outer(T* out, int64_t ld, bool cells_major, const T* gp, const T* a, \
                                     int64_t T_, int64_t Dc) {                                     \
    outer_impl<T>(out, ld, cells_major, gp, a, T_, Dc);                                            \
  }                                                                                                \
  GLAMOR_SIMD_CLONES void tile_hidden_sums(const T* z, const T* u, int64_t T_, int64_t Hd, T* s1, T* s2) { \
    hidden_sums_impl<T>(z, u, T_, Hd, s1, s2);                                                    \
  }                                                                                                \
  GLAMOR_SIMD_CLONES void tile_hidden_dz(T* z, const T* u, const T* alpha, const T* beta, int64_t T_, \
                                         int64_t Hd, T* sums) {                                    \
    hidden_dz_impl<T>(z, u, alpha, beta, T_, Hd, sums);                                           \
  }                                                                                                \
  GLAMOR_SIMD_CLONES void tile_dv_write(T* out, int64_t ld, bool cells_major, const T* m, int64_t mj,  \
                                        int64_t mc, const T* ds, const T* a, const T* gp, int64_t T_,  \
                                        int64_t Dc) {                                                  \
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

template <typename T>
struct GradContext {
  T* data;        // dcontext (B, Dc, H, W), NCHW- or channels_last-contiguous; nullptr if unused
  int64_t sb;
  bool cells_major;  // channels_last: cell j of b at data + b * sb + j * Dc
  int64_t N;
};

// The softmax's incoming gradient per cell, t_i = gp . v_i + ga_i, and from the same values
// delta = sum_i a_i t_i - g_lse; then ds_i = a_i (t_i - delta). Forming delta from the very
// terms ds uses (as PyTorch's softmax backward does, rather than from gp . pooled) makes ds
// exactly 0 where it truly is: one cell (a = 1), or a one-hot softmax.
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

template <typename T>
void backward_kernel(const Cells<T>& V, const Params<T>& P, int64_t B, int64_t Hd, const Split& S,
                     const T* gp /* (B, Dc) */, const T* ga /* (B, N) */, const T* glse /* (B) */,
                     const T* lse /* (B) */, SoftmaxGrad sg,
                     const T* hidden /* (B, N, Hd): z saved by the forward, or nullptr: recompute */,
                     BackwardNeeds need, GradContext<T> dctx, double* du /* (items, Hd) */,
                     T* partials /* (groups, Hd * Dc) */, double* vec_partials /* (groups, 3 * Hd) */) {
  using R = double;
  const int64_t N = V.N, Dc = V.Dc;
  const bool bn = P.scale != nullptr;
  const T* a_saved = static_cast<const T*>(sg.attn);
  T* delta = static_cast<T*>(sg.delta);
  const T* t_pre = static_cast<const T*>(sg.t);
  // With saved attn, a batch element in one tile forms delta inside its step; else a pre-pass.
  if (t_pre != nullptr)
    softmax_grad_prepass(V, S, B, gp, ga, static_cast<const T*>(sg.attn_delta), glse, static_cast<T*>(sg.t), delta);
  const W1cPacks pk = make_packs(P, S, N, Dc, Hd, need.context, dctx.cells_major);
  // float32 on AMX: the dV and dW1c GEMMs of every clean tile in exact bf16x3 (gla_bf16x3.h).
  bool x3 = false;
  std::vector<float> x3_c;  // c_k = w2_k (times g_k with the folded BatchNorm)
  bf16x3::Weights x3_w;
  if constexpr (std::is_same_v<T, float>) {
    x3 = P.finite && bf16x3::usable(Dc, Hd);
    if (x3) {
      x3_c.resize(Hd);
      for (int64_t k = 0; k < Hd; ++k) x3_c[k] = P.w2[k] * (bn ? P.scale[k] : 1.f);
      // NCHW dcontext: dV^T (Dc, cells) from the GEMM when the tile is one batch element's cells
      // (their rows are contiguous); for batched tiles of small maps (7x7), dV (cells, Dc) and a
      // strided write measured faster (Xeon/AMX, 2 threads: 1.51 vs 1.40x; 56x56: 1.30 vs 1.42x).
      const bool dv_t = !dctx.cells_major && S.batch == 1;
      if (need.context) x3_w = bf16x3::pack_weights(P.w1c, P.ldw, x3_c.data(), Hd, Dc, dv_t);
      x3 = x3_w.finite;
    }
  }
  const bool batched = S.batch > 1;
  const int64_t max_cells = batched ? S.batch * N : S.tile;
  at::parallel_for(0, S.groups, 1, [&](int64_t g0, int64_t g1) {
    std::vector<T> z(Hd * S.tile), s(S.tile), ds(max_cells), a(max_cells);
    std::vector<T> pack(V.layout == Layout::Packed ? Dc * S.tile : 0), tt(S.tile), sums(4 * Hd);
    std::vector<T> zb(batched ? Hd * S.batch * N : 0);
    std::vector<T> vb(batched && !batch_in_place(V) ? Dc * S.batch * N : 0);
    std::optional<bf16x3::Tile> xt;
    // Group sums of the dW1c GEMMs without c: (Dc, Hd) from channel-major tiles, (Hd, Dc) from
    // cell-major ones; the dV GEMM's output (cells, Dc) or (Dc, padded cells).
    std::vector<float> x3_acc_ct, x3_acc_tc;
    bf16x3::AlignedVector<float> x3_m;
    if (x3) {
      xt.emplace(max_cells, Dc, Hd);
      x3_acc_ct.resize(need.w1c ? Dc * Hd : 0);
      x3_acc_tc.resize(need.w1c ? Dc * Hd : 0);
      x3_m.resize(need.context ? bf16x3::Tile::padded(max_cells) * Dc : 0);
    }
    T* dW1c = nullptr;
    R *dw2 = nullptr, *dgamma = nullptr, *dbeta = nullptr;
    // One batch element's cells [n0, n0 + T_) at row j0 of the tile: a, ds (into a_t, ds_t);
    // z (T_, Hd) -> dz (T_, Hd) (may be z); vector sums; the bf16x3 mask rows. Returns whether
    // every ds is finite.
    auto step = [&](const TileView<T>& tv, const T* zt, T* dzt, int64_t T_, int64_t b, int64_t n0, int64_t j0,
                    R* du_it) {
      const T* u = P.u + b * Hd;
      const T* gpb = gp + b * Dc;
      T* at_ = a.data() + j0;
      T* dst = ds.data() + j0;
      if (a_saved != nullptr) {
        std::copy(a_saved + b * N + n0, a_saved + b * N + n0 + T_, at_);
      } else {
        tile_scores(P, u, zt, T_, Hd, s.data());
        for (int64_t j = 0; j < T_; ++j) at_[j] = std::exp(s[j] - lse[b]);
      }
      T d;
      if (t_pre != nullptr) {
        std::copy(t_pre + b * N + n0, t_pre + b * N + n0 + T_, tt.data());
        d = delta[b];
      } else {
        // attn given and the whole of b is this tile (T_ == N)
        tile_gv(tv, gpb, T_, Dc, tt.data());
        for (int64_t j = 0; j < T_; ++j) tt[j] += ga[b * N + n0 + j];
        double acc = 0;
        for (int64_t j = 0; j < T_; ++j) acc += double(at_[j]) * double(tt[j]);
        d = T(acc) - glse[b];
      }
      bool finite = true;
      for (int64_t j = 0; j < T_; ++j) {
        dst[j] = at_[j] * (tt[j] - d);
        finite = finite && std::isfinite(dst[j]);
      }
      if constexpr (std::is_same_v<T, float>) {
        if (x3 && finite) xt->mask(zt, u, P.scale, P.shift, j0, T_);  // before dz overwrites z
      }
      // tile sums in T, then into the double accumulators.
      tile_dz(P, u, dst, zt, dzt, T_, Hd, sums.data());
      for (int64_t k = 0; k < Hd; ++k) {
        dw2[k] += R(sums[k]);
        du_it[k] += R(sums[3 * Hd + k]);
      }
      if (bn) {
        for (int64_t k = 0; k < Hd; ++k) {
          dgamma[k] += R(sums[Hd + k]);
          dbeta[k] += R(sums[2 * Hd + k]);
        }
      }
      return finite;
    };
    // dV of batch element b's cells [n0, n0 + T_) (tile row j0) from dz, in float32 GEMMs:
    // dV_tile = dZ (T_ x Hd) W1c (Hd x Dc) + a gp^T, written in place in either layout.
    auto dv_fp32 = [&](const T* dzt, int64_t T_, int64_t b, int64_t n0, int64_t j0) {
      const T* gpb = gp + b * Dc;
      const T* at_ = a.data() + j0;
      const float* pw = pk.find<T>(kPackDV, T_);
      if (dctx.cells_major) {  // column-major (Dc x T_), ld Dc
        T* out = dctx.data + b * dctx.sb + n0 * Dc;
        if constexpr (std::is_same_v<T, float>) {
          if (pw) blas().compute(kColMajor, kPacked, kNoTrans, Dc, T_, Hd, pw, Dc, dzt, Hd, 0.f, out, Dc);
        }
        if (!pw) gemm<T>(false, false, Dc, T_, Hd, T(1), P.w1c, P.ldw, dzt, Hd, T(0), out, Dc);
        tile_outer(out, Dc, true, gpb, at_, T_, Dc);
      } else {  // NCHW: column-major (T_ x Dc), ld N
        T* out = dctx.data + b * dctx.sb + n0;
        if constexpr (std::is_same_v<T, float>) {
          if (pw) blas().compute(kColMajor, kTrans, kPacked, T_, Dc, Hd, dzt, Hd, pw, Hd, 0.f, out, dctx.N);
        }
        if (!pw) gemm<T>(true, true, T_, Dc, Hd, T(1), dzt, Hd, P.w1c, P.ldw, T(0), out, dctx.N);
        tile_outer(out, dctx.N, false, gpb, at_, T_, Dc);
      }
    };
    // dW1c^T (Dc x Hd, col-major) += V_tile^T (Dc x T_) dZ (T_ x Hd)
    auto add_dw1c = [&](const TileView<T>& tv, const T* dz, int64_t T_) {
      if (need.w1c) gemm<T>(tv.ct, true, Dc, Hd, T_, T(1), tv.p, tv.ld, dz, Hd, T(1), dW1c, Dc);
    };
    // The tile's two GEMMs in bf16x3 when every ds and Y_i = ds_i v_i is finite. `split` hands
    // the tile's cells to xt->split_ct / split_tc and says which; `parts` visits the tile's
    // (b, n0, T_, j0) for the dV writes. Returns whether it did them (dW1c into x3_acc_*).
    auto gemms_x3 = [&](int64_t cells, bool clean, auto&& split, auto&& parts) {
      if constexpr (std::is_same_v<T, float>) {
        if (!x3 || !clean) return false;
        if (need.w1c) {
          const bool ct = split();
          if (!xt->add_dw1c(ct, (ct ? x3_acc_ct : x3_acc_tc).data())) return false;
        }
        if (need.context) {
          xt->dv(x3_w, x3_m.data());
          const bool cm = dctx.cells_major;
          // m: (cells, Dc), or (Dc, padded cells) when the weights were packed channel-major
          const int64_t mj = x3_w.channel_major ? 1 : Dc, mc = x3_w.channel_major ? bf16x3::Tile::padded(cells) : 1;
          parts([&](int64_t b, int64_t n0, int64_t T_, int64_t j0) {
            T* out = dctx.data + b * dctx.sb + (cm ? n0 * Dc : n0);
            tile_dv_write(out, cm ? Dc : dctx.N, cm, x3_m.data() + j0 * mj, mj, mc, ds.data() + j0, a.data() + j0,
                          gp + b * Dc, T_, Dc);
          });
        }
        return true;
      } else {
        return false;
      }
    };
    // The tile view's cells to the bf16x3 split; returns whether they were channel-major.
    auto split_view = [&](const TileView<T>& tv, int64_t j0, int64_t n) {
      if constexpr (std::is_same_v<T, float>) {
        if (tv.ct) xt->split_ct(tv.p, tv.ld, ds.data() + j0, j0, n);
        else xt->split_tc(tv.p, tv.ld, ds.data());
      }
      return tv.ct;
    };
    for (int64_t g = g0; g < g1; ++g) {
      dW1c = partials + g * Hd * Dc;  // (Hd, Dc); the W1f part is done outside from du
      dw2 = vec_partials + g * 3 * Hd;
      dgamma = dw2 + Hd;
      dbeta = dgamma + Hd;
      std::fill(dW1c, dW1c + Hd * Dc, T(0));
      std::fill(dw2, dw2 + 3 * Hd, R(0));
      std::fill(x3_acc_ct.begin(), x3_acc_ct.end(), 0.f);
      std::fill(x3_acc_tc.begin(), x3_acc_tc.end(), 0.f);
      auto [first, last] = group_items(S, g);
      for (int64_t it = first; it < last;) {
        const int64_t nb = std::min(S.batch, last - it);
        if (nb > 1) {  // items are whole batch elements (chunks == 1), each a single tile
          // The batch's cells as one GEMM operand: a copy unless in place. The bf16x3 path with a
          // saved z reads each element in place instead, and copies only if it falls back.
          const bool lazy = x3 && hidden != nullptr && V.layout != Layout::TC;
          TileView<T> tvb{nullptr, 0, true};
          if (!lazy) tvb = batch_view(V, it, nb, vb.data(), pack.data());
          auto element = [&](int64_t i) { return lazy ? tile_view(V, it + i, 0, N, pack.data()) : sub_view(tvb, i * N); };
          const T* zt = hidden != nullptr ? hidden + it * N * Hd : zb.data();
          if (hidden == nullptr) hidden_tile(P, pk, tvb, nb * N, Dc, Hd, zb.data());
          if (x3) xt->begin(nb * N);
          bool clean = true;
          for (int64_t i = 0; i < nb; ++i) {
            R* du_it = du + (it + i) * Hd;
            std::fill(du_it, du_it + Hd, R(0));
            clean = step(element(i), zt + i * N * Hd, zb.data() + i * N * Hd, N, it + i, 0, i * N, du_it) && clean;
          }
          const bool done = gemms_x3(
              nb * N, clean,
              [&] {
                if (!lazy) return split_view(tvb, 0, nb * N);
                for (int64_t i = 0; i < nb; ++i) split_view(element(i), i * N, N);
                return true;  // tile_view of a CT or Packed layout is channel-major
              },
              [&](auto&& f) {
                for (int64_t i = 0; i < nb; ++i) f(it + i, 0, N, i * N);
              });
          if (!done) {
            if (need.context)
              for (int64_t i = 0; i < nb; ++i) dv_fp32(zb.data() + i * N * Hd, N, it + i, 0, i * N);
            if (need.w1c) add_dw1c(lazy ? batch_view(V, it, nb, vb.data(), pack.data()) : tvb, zb.data(), nb * N);
          }
          it += nb;
          continue;
        }
        const int64_t b = it / S.chunks, n_begin = (it % S.chunks) * S.chunk;
        const int64_t n_end = std::min(N, n_begin + S.chunk);
        R* du_it = du + it * Hd;
        std::fill(du_it, du_it + Hd, R(0));
        for (int64_t n0 = n_begin; n0 < n_end; n0 += S.tile) {
          const int64_t T_ = std::min(S.tile, n_end - n0);
          const auto tv = tile_view(V, b, n0, T_, pack.data());
          const T* zt = hidden != nullptr ? hidden + (b * N + n0) * Hd : z.data();
          if (hidden == nullptr) hidden_tile(P, pk, tv, T_, Dc, Hd, z.data());
          if (x3) xt->begin(T_);
          const bool clean = step(tv, zt, z.data(), T_, b, n0, 0, du_it);
          const bool done = gemms_x3(
              T_, clean, [&] { return split_view(tv, 0, T_); }, [&](auto&& f) { f(b, n0, T_, 0); });
          if (!done) {
            if (need.context) dv_fp32(z.data(), T_, b, n0, 0);
            add_dw1c(tv, z.data(), T_);
          }
        }
        ++it;
      }
      if constexpr (std::is_same_v<T, float>) {
        if (x3 && need.w1c) {
          bf16x3::scale_add_dw1c(x3_acc_ct.data(), true, x3_c.data(), Hd, Dc, dW1c);
          bf16x3::scale_add_dw1c(x3_acc_tc.data(), false, x3_c.data(), Hd, Dc, dW1c);
        }
      }
    }
    if (x3) bf16x3::Tile::release();
  });
}
// ---------------------------------------------------------------------------------------------
using host::compute_type;

// The shared parameters (csrc/gla_host.h) plus what the CPU kernels also need: context in the
// compute dtype (converted only when 16-bit), b2 as a number, and whether w2, scale and shift
// are all finite.
struct Prepared : host::Params {
  at::Tensor context;
  double b2;
  bool finite;
};

Prepared prepare(const at::Tensor& face, const at::Tensor& context, const at::Tensor& w1,
                 const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2,
                 const c10::optional<at::Tensor>& scale, const c10::optional<at::Tensor>& shift,
                 const GlaDims& d) {
  const auto ct = compute_type(context.scalar_type());
  Prepared p;
  static_cast<host::Params&>(p) = host::prepare_params(face, w1, b1, w2, scale, shift, d);
  p.context = context.scalar_type() == ct ? context : context.to(ct);
  p.b2 = b2.to(at::kDouble).item<double>();
  p.finite = p.w2.isfinite().all().item<bool>() &&
             (!p.scale.defined() || (p.scale.isfinite().all().item<bool>() &&
                                     p.shift.isfinite().all().item<bool>()));
  return p;
}

template <typename T>
Params<T> make_params(const Prepared& p, int64_t Df) {
  Params<T> P;
  P.ldw = p.w1.size(1);
  P.w1c = p.w1.data_ptr<T>() + Df;
  P.w1c_t = p.w1c_t.data_ptr<T>();
  P.u = p.u.data_ptr<T>();
  P.w2 = p.w2.data_ptr<T>();
  P.b2 = static_cast<T>(p.b2);
  P.scale = p.scale.defined() ? p.scale.data_ptr<T>() : nullptr;
  P.shift = p.shift.defined() ? p.shift.data_ptr<T>() : nullptr;
  P.finite = p.finite;
  return P;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> gla_forward_cpu(
    const at::Tensor& face, const at::Tensor& context, const at::Tensor& w1, const at::Tensor& b1,
    const at::Tensor& w2, const at::Tensor& b2, const c10::optional<at::Tensor>& hidden_scale,
    const c10::optional<at::Tensor>& hidden_shift, bool save_hidden) {
  const auto d = check_gla_args(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift,
                                c10::DeviceType::CPU);
  const auto ct = compute_type(context.scalar_type());
  auto opts = context.options().dtype(ct);
  auto pooled = at::empty({d.B, d.Dc}, opts);
  auto attn = at::empty({d.B, d.H, d.W}, opts);
  auto lse = at::empty({d.B}, opts);
  auto hidden = save_hidden ? at::empty({d.B, d.N, d.Hd}, opts) : at::empty({0}, opts);
  if (d.B > 0) {
    auto p = prepare(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift, d);
    AT_DISPATCH_FLOATING_TYPES(ct, "gla_forward_cpu", [&] {
      auto V = describe_cells<scalar_t>(p.context);
      auto P = make_params<scalar_t>(p, d.Df);
      auto S = make_split(d.B, d.N, d.Dc, d.Hd, sizeof(scalar_t));
      forward_kernel<scalar_t>(V, P, d.B, d.Hd, S, pooled.data_ptr<scalar_t>(),
                               attn.data_ptr<scalar_t>(), lse.data_ptr<scalar_t>(),
                               save_hidden ? hidden.data_ptr<scalar_t>() : nullptr);
    });
  }
  const auto st = context.scalar_type();
  return {pooled.to(st), attn.to(st), lse, hidden};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
           at::Tensor>
gla_backward_cpu(const at::Tensor& grad_pooled, const at::Tensor& grad_attn,
                 const at::Tensor& grad_lse, const at::Tensor& face, const at::Tensor& context,
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
  const bool bn = hidden_scale.has_value();
  const auto st = context.scalar_type();
  const auto ct = compute_type(st);
  auto opts = context.options().dtype(ct);
  const bool need_ctx = needs_grad[1], need_w1 = needs_grad[2];
  const bool need_any = std::any_of(needs_grad.begin(), needs_grad.end(), [](bool x) { return x; });
  if (!need_any || d.B == 0) {
    return host::zero_grads(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift, needs_grad);
  }
  auto p = prepare(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift, d);
  auto gp = grad_pooled.to(ct).contiguous();
  auto ga = grad_attn.reshape({d.B, d.N}).to(ct).contiguous();
  auto glse = grad_lse.to(ct).contiguous();
  auto lse_c = lse.to(ct).contiguous();
  // The kernel forms delta from attn and the per-cell terms ds uses (exact zeros; see
  // SoftmaxGrad). 16-bit: ds recomputes a in float32, delta uses the rounded attn.
  const bool a_saved = st == ct;
  const at::Tensor a_c = attn.reshape({d.B, d.N}).to(ct).contiguous();
  const at::Tensor delta = at::empty({d.B}, opts);

  // dcontext in the layout the kernel writes directly: channels_last stays channels_last.
  const at::Tensor dctx = need_ctx ? host::empty_grad_context(context, d, ct) : at::Tensor();
  at::Tensor dU, dW1c, dw2, dgamma, dbeta;
  AT_DISPATCH_FLOATING_TYPES(ct, "gla_backward_cpu", [&] {
    auto V = describe_cells<scalar_t>(p.context);
    auto P = make_params<scalar_t>(p, d.Df);
    auto S = make_split(d.B, d.N, d.Dc, d.Hd, sizeof(scalar_t));
    auto dopts = opts.dtype(at::kDouble);
    auto du = at::empty({S.items, d.Hd}, dopts);
    auto partials = at::empty({S.groups, d.Hd * d.Dc}, opts);
    auto vec_partials = at::empty({S.groups, 3 * d.Hd}, dopts);
    BackwardNeeds need{need_ctx, need_w1};
    const bool dv_ct = !need_ctx || dctx.is_contiguous();
    const bool whole_b = S.chunks == 1 && S.tile >= d.N;  // every b in one tile
    at::Tensor t_pre = !a_saved || !whole_b ? at::empty({d.B, d.N}, opts) : at::Tensor();
    SoftmaxGrad sg{a_saved ? a_c.data_ptr() : nullptr, a_c.data_ptr(),
                   t_pre.defined() ? t_pre.data_ptr() : nullptr, delta.data_ptr()};
    backward_kernel<scalar_t>(V, P, d.B, d.Hd, S, gp.data_ptr<scalar_t>(),
                              ga.data_ptr<scalar_t>(), glse.data_ptr<scalar_t>(),
                              lse_c.data_ptr<scalar_t>(), sg,
                              saved_z ? hidden->data_ptr<scalar_t>() : nullptr, need,
                              GradContext<scalar_t>{need_ctx ? dctx.data_ptr<scalar_t>() : nullptr,
                                                    need_ctx ? dctx.stride(0) : 0, !dv_ct, d.N},
                              du.data_ptr<double>(),
                              partials.data_ptr<scalar_t>(), vec_partials.data_ptr<double>());
    // Fixed-order reductions: chunks of each b, then groups.
    dU = du.view({d.B, S.chunks, d.Hd}).sum(1).to(ct);
    auto total = partials[0].clone();
    for (int64_t g = 1; g < S.groups; ++g) total.add_(partials[g]);
    dW1c = total.view({d.Hd, d.Dc});
    auto vec_total = vec_partials[0].clone();
    for (int64_t g = 1; g < S.groups; ++g) vec_total.add_(vec_partials[g]);
    vec_total = vec_total.to(ct);
    dw2 = vec_total.narrow(0, 0, d.Hd).clone();  // outputs must not alias
    dgamma = vec_total.narrow(0, d.Hd, d.Hd).clone();  // outputs must not alias
    dbeta = vec_total.narrow(0, 2 * d.Hd, d.Hd).clone();  // outputs must not alias
  });
  return host::assemble_grads(face, context, b2, grad_lse, p, d, dU, dW1c, dctx, dw2, dgamma, dbeta, bn,
                              needs_grad);
}

// ---------------------------------------------------------------------------------------------
// Batch statistics of the hidden layer h = relu(z + u), z = V W1c^T, over all B*N cells, for
// training-mode BatchNorm on it (glamor_fast/ops/hidden_stats.py has the maths). The same tiles
// as the GLA op; per tile the sums run in T over at most a tile of cells, then in double.
namespace {

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
                        if (need_ctx) {
                          const float* pw = pk.find<T>(kPackDV, T_);
                          if (dctx.cells_major) {
                            T* out = dctx.data + b * dctx.sb + n0 * Dc;
                            if constexpr (std::is_same_v<T, float>) {
                              if (pw) blas().compute(kColMajor, kPacked, kNoTrans, Dc, T_, Hd, pw, Dc, dz, Hd, 0.f, out, Dc);
                            }
                            if (!pw) gemm<T>(false, false, Dc, T_, Hd, T(1), P.w1c, P.ldw, dz, Hd, T(0), out, Dc);
                          } else {
                            T* out = dctx.data + b * dctx.sb + n0;
                            if constexpr (std::is_same_v<T, float>) {
                              if (pw) blas().compute(kColMajor, kTrans, kPacked, T_, Dc, Hd, dz, Hd, pw, Hd, 0.f, out, dctx.N);
                            }
                            if (!pw) gemm<T>(true, true, T_, Dc, Hd, T(1), dz, Hd, P.w1c, P.ldw, T(0), out, dctx.N);
                          }
                        }
                      });
                      if (need_w1c) gemm<T>(tv.ct, true, Dc, Hd, cells, T(1), tv.p, tv.ld, zt, Hd, T(1), dW1c, Dc);
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
  m.impl("gla_forward", &gla_forward_cpu);
  m.impl("gla_backward", &gla_backward_cpu);
  m.impl("gla_hidden_stats_forward", &gla_hidden_stats_forward_cpu);
  m.impl("gla_hidden_stats_backward", &gla_hidden_stats_backward_cpu);
}

}  // namespace cpu
}  // namespace glamor_fast
