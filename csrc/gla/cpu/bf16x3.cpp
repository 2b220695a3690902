// The GLA backward's two GEMMs, exactly, on AMX bf16 tiles: see bf16x3.h for the maths.
#include "bf16x3.h"

#include <ATen/ATen.h>
#include <ATen/native/CPUBlas.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "common/simd.h"

namespace glamor_fast {
namespace cpu {
namespace bf16x3 {
namespace {

namespace blas = at::native::cpublas;

constexpr int64_t kBlock = 64;            // brgemm's packed B: column blocks of at most 64
constexpr uint16_t kOne = 0x3F80;         // bfloat16 1.0
constexpr uint32_t kExp = 0x7F800000u;    // all exponent bits set: inf or NaN

GLAMOR_CPU_INLINE uint32_t bits(float x) { return std::bit_cast<uint32_t>(x); }
GLAMOR_CPU_INLINE float from_bits(uint32_t b) { return std::bit_cast<float>(b); }

// x = hi + mid + lo exactly (bfloat16 bit patterns), for finite x above 2^-110 in magnitude.
GLAMOR_CPU_INLINE void split3(float x, uint16_t& hi, uint16_t& mid, uint16_t& lo) {
  const uint32_t b = bits(x);
  const float r = x - from_bits(b & 0xFFFF0000u);
  const uint32_t rb = bits(r);
  const float l = r - from_bits(rb & 0xFFFF0000u);
  hi = uint16_t(b >> 16);
  mid = uint16_t(rb >> 16);
  lo = uint16_t(bits(l) >> 16);
}

// Index of logical element (r, n) of a K x N matrix packed for brgemm (VNNI pairs of rows,
// column blocks of kBlock; K even). Every block but the last is kBlock wide.
GLAMOR_CPU_INLINE int64_t packed_at(int64_t r, int64_t n, int64_t K, int64_t N) {
  const int64_t blk = n / kBlock, width = std::min(kBlock, N - blk * kBlock);
  return blk * kBlock * K + ((r >> 1) * width + (n - blk * kBlock)) * 2 + (r & 1);
}

// oneDNN's packed layout must be the one packed_at writes: checked once against cpublas::pack.
bool layout_matches() {
  constexpr int64_t K = 4, N = 32;
  std::vector<at::BFloat16> src(K * N), ours(K * N), theirs(K * N);
  for (int64_t i = 0; i < K * N; ++i) src[i] = at::BFloat16(float(i + 1));
  for (int64_t r = 0; r < K; ++r)
    for (int64_t n = 0; n < N; ++n) ours[packed_at(r, n, K, N)] = src[r * N + n];
  blas::pack(K, N, N, N, at::kBFloat16, at::kBFloat16, src.data(), theirs.data());
  return std::memcmp(ours.data(), theirs.data(), sizeof(at::BFloat16) * K * N) == 0;
}

GLAMOR_CPU_CLONES void mask_rows(const float* z, const float* u, const float* g, const float* be, int64_t n,
                                 int64_t Hd, uint16_t* a_mask /* (n, 3 Hd) */) {
  for (int64_t j = 0; j < n; ++j) {
    const float* zj = z + j * Hd;
    uint16_t* aj = a_mask + j * 3 * Hd;
    if (g != nullptr) {
      for (int64_t k = 0; k < Hd; ++k) {
        const float zz = zj[k] + u[k];
        aj[k] = (zz > 0.f && g[k] * std::max(zz, 0.f) + be[k] > 0.f) ? kOne : uint16_t(0);
      }
    } else {
      for (int64_t k = 0; k < Hd; ++k) aj[k] = zj[k] + u[k] > 0.f ? kOne : uint16_t(0);
    }
    std::memcpy(aj + Hd, aj, Hd * sizeof(uint16_t));
    std::memcpy(aj + 2 * Hd, aj, Hd * sizeof(uint16_t));
  }
}

// The dW1c GEMM's B, (3 kpad, Hd) packed: the mask rows (first Hd of each a_mask row) in pairs
// of cells, once per part (the three parts are the same rows).
GLAMOR_CPU_CLONES void pack_mask(const uint16_t* a_mask, int64_t cells, int64_t kpad, int64_t Hd, uint16_t* b_mask) {
  const int64_t K3 = 3 * kpad, lda = 3 * Hd;
  for (int64_t n0 = 0; n0 < Hd; n0 += kBlock) {
    const int64_t w = std::min(kBlock, Hd - n0);
    uint32_t* blk = reinterpret_cast<uint32_t*>(b_mask + n0 * K3);  // (3 kpad / 2, w) pairs
    for (int64_t q = 0; q < kpad / 2; ++q) {
      const uint16_t* r0 = a_mask + 2 * q * lda + n0;
      const uint16_t* r1 = r0 + lda;
      uint32_t* out = blk + q * w;
      if (2 * q + 1 < cells) {
        for (int64_t k = 0; k < w; ++k) out[k] = uint32_t(r0[k]) | (uint32_t(r1[k]) << 16);
      } else if (2 * q < cells) {  // the second cell is padding
        for (int64_t k = 0; k < w; ++k) out[k] = uint32_t(r0[k]);
      } else {
        std::fill(out, out + w, 0u);
      }
    }
    const int64_t part = kpad / 2 * w;  // uint32 words per part
    std::memcpy(blk + part, blk, part * sizeof(uint32_t));
    std::memcpy(blk + 2 * part, blk, part * sizeof(uint32_t));
  }
}

// One row of Y^T split: hi/mid/lo[j] = parts of ds[j] * v[j]; ORs into `bad` whether one is not finite.
GLAMOR_CPU_INLINE void split_row(const float* __restrict v, const float* __restrict ds, int64_t n,
                                 uint16_t* __restrict hi, uint16_t* __restrict mid, uint16_t* __restrict lo,
                                 uint32_t& bad) {
  uint32_t b = 0;
  for (int64_t j = 0; j < n; ++j) {
    const float x = ds[j] * v[j];
    b |= uint32_t((bits(x) & kExp) == kExp);
    split3(x, hi[j], mid[j], lo[j]);
  }
  bad |= b;
}

// Columns [j0, j0 + n) of the ct dW1c GEMM's A: Y^T (Dc, 3 kpad) as hi | mid | lo, from
// channel-major v. ORs into `bad` whether a value was not finite.
GLAMOR_CPU_CLONES void split_rows(const float* v, int64_t ld, const float* ds, int64_t j0, int64_t n, int64_t Dc,
                                  int64_t kpad, uint16_t* a_y, uint32_t& bad) {
  const int64_t K3 = 3 * kpad;
  constexpr int64_t kAhead = 8;  // rows of v in flight: strided rows defeat the hardware prefetcher
  for (int64_t c = 0; c < Dc; ++c) {
    if (c + kAhead < Dc) {
      const char* next = reinterpret_cast<const char*>(v + (c + kAhead) * ld);
      for (int64_t off = 0; off < n * int64_t(sizeof(float)); off += 64) __builtin_prefetch(next + off);
    }
    uint16_t* hi = a_y + c * K3 + j0;
    split_row(v + c * ld, ds, n, hi, hi + kpad, hi + 2 * kpad, bad);
  }
}

// B of the cell-major dW1c GEMM: Y (3 kpad, Dc) packed (pairs of cells), hi; mid; lo, from
// cell-major v. `zeros` (Dc) stands in for the padding cell.
GLAMOR_CPU_CLONES void split_pairs(const float* v, int64_t ld, const float* ds, int64_t cells, int64_t Dc,
                                   int64_t kpad, const float* zeros, uint16_t* b_y, uint32_t& bad) {
  const int64_t K3 = 3 * kpad;
  uint32_t any = 0;  // local: a reference in the loop would stop it vectorising
  for (int64_t n0 = 0; n0 < Dc; n0 += kBlock) {
    const int64_t w = std::min(kBlock, Dc - n0), part = kpad / 2 * w;
    uint32_t* blk = reinterpret_cast<uint32_t*>(b_y + n0 * K3);
    for (int64_t q = 0; q < kpad / 2; ++q) {
      const bool one = 2 * q < cells, two = 2 * q + 1 < cells;
      const float* v0 = one ? v + 2 * q * ld + n0 : zeros;
      const float* v1 = two ? v0 + ld : zeros;
      const float d0 = one ? ds[2 * q] : 0.f, d1 = two ? ds[2 * q + 1] : 0.f;
      uint32_t* __restrict o = blk + q * w;
      for (int64_t k = 0; k < w; ++k) {
        const float x0 = d0 * v0[k], x1 = d1 * v1[k];
        any |= uint32_t((bits(x0) & kExp) == kExp) | uint32_t((bits(x1) & kExp) == kExp);
        uint16_t h0, m0, l0, h1, m1, l1;
        split3(x0, h0, m0, l0);
        split3(x1, h1, m1, l1);
        o[k] = uint32_t(h0) | (uint32_t(h1) << 16);
        o[part + k] = uint32_t(m0) | (uint32_t(m1) << 16);
        o[2 * part + k] = uint32_t(l0) | (uint32_t(l1) << 16);
      }
    }
  }
  bad |= any;
}

// A of the cell-major dW1c GEMM: M^T (Hd, 3 kpad), three times along each row.
GLAMOR_CPU_CLONES void transpose_mask(const uint16_t* a_mask, int64_t cells, int64_t kpad, int64_t Hd, uint16_t* a_mt) {
  const int64_t K3 = 3 * kpad, lda = 3 * Hd;
  for (int64_t k = 0; k < Hd; ++k) {
    uint16_t* row = a_mt + k * K3;
    for (int64_t j = 0; j < cells; ++j) row[j] = a_mask[j * lda + k];
    for (int64_t j = cells; j < kpad; ++j) row[j] = 0;
    std::memcpy(row + kpad, row, kpad * sizeof(uint16_t));
    std::memcpy(row + 2 * kpad, row, kpad * sizeof(uint16_t));
  }
}

// B of the channel-major dV GEMM: M^T stacked (3 Hd, padded) packed (pairs of units). A row of
// a_mask is M_j three times, i.e. its 32-bit words are exactly the packed pair-rows of cell j:
// a transpose of (cells, 3 Hd / 2) words into blocks of 64 cells.
GLAMOR_CPU_CLONES void pack_mask_units(const uint16_t* a_mask, int64_t cells, int64_t padded, int64_t Hd,
                                       uint16_t* b_mt) {
  const int64_t words = 3 * Hd / 2;
  const uint32_t* src = reinterpret_cast<const uint32_t*>(a_mask);
  for (int64_t j0 = 0; j0 < padded; j0 += kBlock) {
    const int64_t w = std::min(kBlock, padded - j0), have = std::min(w, cells - j0);
    uint32_t* blk = reinterpret_cast<uint32_t*>(b_mt + j0 * 3 * Hd);
    for (int64_t r = 0; r < words; ++r) {
      uint32_t* o = blk + r * w;
      for (int64_t jj = 0; jj < have; ++jj) o[jj] = src[(j0 + jj) * words + r];
      for (int64_t jj = have; jj < w; ++jj) o[jj] = 0;
    }
  }
}

}  // namespace

bool usable(int64_t Dc, int64_t Hd) {
  if (Dc <= 0 || Hd <= 0 || Dc % 16 != 0 || Hd % 16 != 0) return false;
  const char* env = std::getenv("GLAMOR_FAST_BF16X3");
  if (env != nullptr && std::strcmp(env, "0") == 0) return false;
  if (!blas::could_pack(at::kBFloat16)) return false;  // no AMX (or oneDNN turned off)
  static const bool layout_ok = layout_matches();
  if (!layout_ok) {
    TORCH_WARN_ONCE("glamor_fast: oneDNN's packed bf16 layout is not the one the bf16x3 GLA backward "
                    "writes; using float32 GEMMs instead");
  }
  return layout_ok;
}

Weights pack_weights(const float* w1c, int64_t ldw, const float* c, int64_t Hd, int64_t Dc, bool channel_major) {
  Weights w;
  w.channel_major = channel_major;
  const int64_t K3 = 3 * Hd;
  w.bf16.assign(K3 * Dc, 0);
  for (int64_t k = 0; k < Hd; ++k) {
    for (int64_t n = 0; n < Dc; ++n) {
      const float x = c[k] * w1c[k * ldw + n];
      if (!std::isfinite(x)) w.finite = false;
      uint16_t part[3];
      split3(x, part[0], part[1], part[2]);
      for (int p = 0; p < 3; ++p) {
        const int64_t r = p * Hd + k;
        w.bf16[channel_major ? n * K3 + r : packed_at(r, n, K3, Dc)] = part[p];
      }
    }
  }
  return w;
}

Tile::Tile(int64_t max_cells, int64_t Dc, int64_t Hd) : max_cells_(max_cells), Dc_(Dc), Hd_(Hd) {
  a_mask_.resize(max_cells * 3 * Hd);
}

void Tile::begin(int64_t cells) {
  TORCH_CHECK(cells > 0 && cells <= max_cells_, "bf16x3::Tile: ", cells, " cells, at most ", max_cells_);
  cells_ = cells;
  kpad_ = (cells + 31) / 32 * 32;  // even (pairs of cells), and rows of 3 kpad stay 64-byte aligned
  bad_ = 0;
}

void Tile::mask(const float* z, const float* u, const float* scale, const float* shift, int64_t j0, int64_t n) {
  mask_rows(z, u, scale, shift, n, Hd_, a_mask_.data() + j0 * 3 * Hd_);
}

void Tile::split_ct(const float* v, int64_t ld, const float* ds, int64_t j0, int64_t n) {
  a_y_.resize(std::max<size_t>(a_y_.size(), Dc_ * 3 * kpad_max()));
  split_rows(v, ld, ds, j0, n, Dc_, kpad_, a_y_.data(), bad_);
}

void Tile::split_tc(const float* v, int64_t ld, const float* ds) {
  b_y_.resize(std::max<size_t>(b_y_.size(), 3 * kpad_max() * Dc_));
  zeros_.resize(Dc_);
  split_pairs(v, ld, ds, cells_, Dc_, kpad_, zeros_.data(), b_y_.data(), bad_);
}

bool Tile::add_dw1c(bool ct, float* acc) {
  if (bad_ != 0) return false;
  const int64_t K3 = 3 * kpad_;
  const at::BFloat16 *a, *b;
  int64_t M, N;
  if (ct) {  // acc (Dc, Hd) += Y^T (Dc, K3) M (K3, Hd)
    for (int64_t c = 0; c < Dc_; ++c) {  // the padding cells
      uint16_t* row = a_y_.data() + c * K3;
      for (int p = 0; p < 3; ++p) std::fill(row + p * kpad_ + cells_, row + (p + 1) * kpad_, uint16_t(0));
    }
    b_mask_.resize(std::max<size_t>(b_mask_.size(), 3 * kpad_max() * Hd_));
    pack_mask(a_mask_.data(), cells_, kpad_, Hd_, b_mask_.data());
    a = reinterpret_cast<const at::BFloat16*>(a_y_.data());
    b = reinterpret_cast<const at::BFloat16*>(b_mask_.data());
    M = Dc_, N = Hd_;
  } else {  // acc (Hd, Dc) += M^T (Hd, K3) Y (K3, Dc)
    a_y_.resize(std::max<size_t>(a_y_.size(), Hd_ * 3 * kpad_max()));
    transpose_mask(a_mask_.data(), cells_, kpad_, Hd_, a_y_.data());
    a = reinterpret_cast<const at::BFloat16*>(a_y_.data());
    b = reinterpret_cast<const at::BFloat16*>(b_y_.data());
    M = Hd_, N = Dc_;
  }
  for (int64_t n0 = 0; n0 < N; n0 += kBlock) {
    const int64_t w = std::min(kBlock, N - n0);
    blas::brgemm(M, w, K3, K3, w, N, true, a, b + n0 * K3, acc + n0, true);
  }
  return true;
}

void Tile::dv(const Weights& wt, float* out) {
  const int64_t K3 = 3 * Hd_;
  const auto* wb = reinterpret_cast<const at::BFloat16*>(wt.bf16.data());
  if (!wt.channel_major) {  // out (cells, Dc) = M (cells, K3) W' (K3, Dc)
    const auto* a = reinterpret_cast<const at::BFloat16*>(a_mask_.data());
    for (int64_t n0 = 0; n0 < Dc_; n0 += kBlock) {
      const int64_t w = std::min(kBlock, Dc_ - n0);
      blas::brgemm(cells_, w, K3, K3, w, Dc_, false, a, wb + n0 * K3, out + n0, true);
    }
    return;
  }
  // out (Dc, padded) = W'^T (Dc, K3) M^T (K3, padded)
  const int64_t np = padded(cells_);
  b_mask_.resize(std::max<size_t>(b_mask_.size(), K3 * padded(max_cells_)));
  pack_mask_units(a_mask_.data(), cells_, np, Hd_, b_mask_.data());
  const auto* b = reinterpret_cast<const at::BFloat16*>(b_mask_.data());
  for (int64_t n0 = 0; n0 < np; n0 += kBlock) {
    const int64_t w = std::min(kBlock, np - n0);
    blas::brgemm(Dc_, w, K3, K3, w, np, false, wb, b + n0 * K3, out + n0, true);
  }
}

void Tile::release() { blas::brgemm_release(true); }

void scale_add_dw1c(const float* acc, bool ct, const float* c, int64_t Hd, int64_t Dc, float* dw1c) {
  for (int64_t k = 0; k < Hd; ++k) {
    float* row = dw1c + k * Dc;
    const float ck = c[k];
    if (ct) {
      for (int64_t n = 0; n < Dc; ++n) row[n] += ck * acc[n * Hd + k];
    } else {
      const float* src = acc + k * Dc;
      for (int64_t n = 0; n < Dc; ++n) row[n] += ck * src[n];
    }
  }
}

}  // namespace bf16x3
}  // namespace cpu
}  // namespace glamor_fast
