// The tiling machinery shared by the CPU GLA kernels (gla.cpp) and the hidden-statistics kernels
// (hidden_stats.cpp): the BLAS GEMM, how a context's cells are read in tiles, the split of
// the B x N cells into items and per-thread groups, the hidden tile z = V_tile W1c^T, and the
// parameters the kernels read.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <vector>

#include "common/simd.h"
#include "gla/checks.h"
#include "gla/host.h"

namespace glamor_fast {
namespace cpu {
namespace gla_tiles {

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

inline const Blas& blas() {
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
// Any other strides are packed per tile into a thread-local CT buffer of Dc x tile elements, and
// so is a float16 / bfloat16 context (T = float): converted tile by tile, never as a whole.
enum class Layout { CT, TC, Packed };

template <typename T>
struct Cells {
  const T* base;  // context data pointer (nullptr for a 16-bit context: base16)
  int64_t sb, sc, sh, sw, W, N, Dc;
  Layout layout;
  int64_t ld;  // for CT / TC
  const void* base16 = nullptr;  // the 16-bit context, read through Packed tiles
  bool bf16 = false;             // base16 holds bfloat16 (else float16)
  Layout layout16 = Layout::Packed;
  int64_t ld16 = 0;              // the 16-bit context's own CT / TC leading dimension
};

template <typename T>
Cells<T> describe_cells(const at::Tensor& context) {
  Cells<T> v;
  const auto st = context.scalar_type();
  const bool half = st == at::kHalf || st == at::kBFloat16;
  constexpr bool is_float = std::is_same_v<T, float>;
  TORCH_CHECK((half ? is_float : st == c10::CppTypeToScalarType<T>::value),
              "glamor_fast: internal: cells of dtype ", st);
  v.base = half ? nullptr : static_cast<const T*>(context.data_ptr());
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
  if (half) {
    v.base16 = context.data_ptr();
    v.bf16 = st == at::kBFloat16;
    v.layout16 = v.layout;
    v.ld16 = v.ld;
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

// dst[j] = float(src[j]): bfloat16 is the high half of a float32; float16 through the compiler's
// _Float16 (F16C on x86-64-v3 and up). Compiled per ISA so the loops vectorise.
GLAMOR_CPU_CLONES static void bf16_to_float(const uint16_t* __restrict src, float* __restrict dst, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const uint32_t b = uint32_t(src[j]) << 16;
    float f;
    __builtin_memcpy(&f, &b, sizeof f);
    dst[j] = f;
  }
}

GLAMOR_CPU_CLONES static void half_to_float(const uint16_t* __restrict src, float* __restrict dst, int64_t n) {
  for (int64_t j = 0; j < n; ++j) dst[j] = static_cast<float>(c10::Half(src[j], c10::Half::from_bits()));
}

// The 16-bit context's cells [n0, n0 + T_) of b (from base), converted into pack (Dc, T_).
inline void convert_tile(const Cells<float>& v, const uint16_t* base, int64_t n0, int64_t T_, float* pack) {
  auto row = [&](const uint16_t* src, float* dst, int64_t n) {
    if (v.bf16) bf16_to_float(src, dst, n);
    else half_to_float(src, dst, n);
  };
  if (v.layout16 == Layout::CT) {
    for (int64_t c = 0; c < v.Dc; ++c) row(base + c * v.ld16 + n0, pack + c * T_, T_);
  } else if (v.layout16 == Layout::TC) {
    std::vector<float> cell(v.Dc);
    for (int64_t j = 0; j < T_; ++j) {
      row(base + (n0 + j) * v.ld16, cell.data(), v.Dc);
      for (int64_t c = 0; c < v.Dc; ++c) pack[c * T_ + j] = cell[c];
    }
  } else {
    for (int64_t c = 0; c < v.Dc; ++c) {
      const uint16_t* src = base + c * v.sc;
      for (int64_t j = 0; j < T_; ++j) {
        const int64_t n = n0 + j;
        row(src + (n / v.W) * v.sh + (n % v.W) * v.sw, pack + c * T_ + j, 1);
      }
    }
  }
}

template <typename T>
TileView<T> tile_view(const Cells<T>& v, int64_t b, int64_t n0, int64_t T_, T* pack) {
  if constexpr (std::is_same_v<T, float>) {
    if (v.base16 != nullptr) {
      convert_tile(v, static_cast<const uint16_t*>(v.base16) + b * v.sb, n0, T_, pack);
      return {pack, T_, true};
    }
  }
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

inline Split make_split(int64_t B, int64_t N, int64_t Dc, int64_t Hd, size_t elem) {
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

template <typename T>
struct GradContext {
  T* data;        // dcontext (B, Dc, H, W), NCHW- or channels_last-contiguous; nullptr if unused
  int64_t sb;
  bool cells_major;  // channels_last: cell j of b at data + b * sb + j * Dc
  int64_t N;
};

// dV of batch element b's cells [n0, n0 + T_) = dZ (T_ x Hd) W1c, written in place into dctx in
// its layout (channels_last: column-major (Dc x T_), ld Dc; NCHW: column-major (T_ x Dc), ld N).
// Returns where it wrote (the caller may add to it with the same leading dimension).
template <typename T>
T* dv_tile(const Params<T>& P, const W1cPacks& pk, const GradContext<T>& dctx, const T* dz, int64_t T_,
           int64_t b, int64_t n0, int64_t Dc, int64_t Hd) {
  const float* pw = pk.find<T>(kPackDV, T_);
  if (dctx.cells_major) {
    T* out = dctx.data + b * dctx.sb + n0 * Dc;
    if constexpr (std::is_same_v<T, float>) {
      if (pw) blas().compute(kColMajor, kPacked, kNoTrans, Dc, T_, Hd, pw, Dc, dz, Hd, 0.f, out, Dc);
    }
    if (!pw) gemm<T>(false, false, Dc, T_, Hd, T(1), P.w1c, P.ldw, dz, Hd, T(0), out, Dc);
    return out;
  }
  T* out = dctx.data + b * dctx.sb + n0;
  if constexpr (std::is_same_v<T, float>) {
    if (pw) blas().compute(kColMajor, kTrans, kPacked, T_, Dc, Hd, dz, Hd, pw, Hd, 0.f, out, dctx.N);
  }
  if (!pw) gemm<T>(true, true, T_, Dc, Hd, T(1), dz, Hd, P.w1c, P.ldw, T(0), out, dctx.N);
  return out;
}

// dW1c^T (Dc x Hd, column-major, i.e. dW1c (Hd, Dc) row-major) += V_tile^T (Dc x T_) dZ (T_ x Hd).
template <typename T>
void add_dw1c_tile(const TileView<T>& tv, const T* dz, int64_t T_, int64_t Dc, int64_t Hd, T* dW1c) {
  gemm<T>(tv.ct, true, Dc, Hd, T_, T(1), tv.p, tv.ld, dz, Hd, T(1), dW1c, Dc);
}

// ---------------------------------------------------------------------------------------------
using host::compute_type;

// The shared parameters (csrc/gla/host.h) plus what the CPU kernels also need: the context as
// given (a 16-bit one is converted tile by tile: Cells::base16), b2 as a number, and whether w2,
// scale and shift are all finite. Used by the hidden-statistics kernels (hidden_stats.cpp); the
// GLA op builds its Params without ATen calls (host_cpu.h).
struct Prepared : host::Params {
  at::Tensor context;
  double b2;
  bool finite;
};

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

}  // namespace gla_tiles
}  // namespace cpu
}  // namespace glamor_fast
