// The GLA backward's two GEMMs, exactly, on AMX bf16 tiles (float32 inputs, CPUs with AMX;
// docs/gla.md X1-X3).
//
// Without NaN/inf, the hidden layer's gradient has the form dz_ik = ds_i c_k M_ik, with
//   M_ik = [z_ik + u_k > 0]              (and [g_k h_ik + beta_k > 0] with the folded BatchNorm)
//   c_k  = w2_k                          (w2_k g_k with the folded BatchNorm)
// so both GEMMs that consume dz have a 0/1 operand:
//   dW1c^T (Dc, Hd) = c_k * (Y^T M)       with Y_i = ds_i v_i       (cells, Dc)
//   dV     (T, Dc)  = ds_i * (M W')       with W'  = diag(c) W1c    (Hd, Dc)
// A float32 x splits exactly into three bfloat16 parts x = hi + mid + lo (truncate to 8
// significant bits twice; the rest has at most 8 bits), and a 0/1 times a bfloat16 is exact, so
// M Y = M hi + M mid + M lo: three bf16 GEMMs with float32 accumulation (oneDNN's brgemm
// ukernel on AMX, via at::native::cpublas) give the float32 GEMM's result with float32
// accumulation error. The three parts are stacked along K: one brgemm of K = 3 T (or 3 Hd).
// Not exact below 2^-110 in magnitude (AMX treats bf16 subnormal parts as zero).
//
// A tile with a non-finite ds, Y or parameter cannot use this (0 * inf); the caller then runs the
// float32 GEMMs for it. GLAMOR_FAST_BF16X3=0 turns the path off (read on every call).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <new>
#include <vector>

namespace glamor_fast {
namespace cpu {
namespace bf16x3 {

// AMX tile loads run ~1.5x faster from 64-byte aligned rows: every buffer is aligned, and
// every leading dimension a multiple of 32 bf16 elements.
template <typename T>
struct Aligned64 {
  using value_type = T;
  Aligned64() = default;
  template <typename U>
  Aligned64(const Aligned64<U>&) {}
  T* allocate(size_t n) {
    void* p = std::aligned_alloc(64, (n * sizeof(T) + 63) / 64 * 64);
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  bool operator==(const Aligned64&) const { return true; }
};
template <typename T>
using AlignedVector = std::vector<T, Aligned64<T>>;

// Whether the path can run here: AMX bf16 through oneDNN's brgemm ukernel, Dc and Hd multiples
// of 16, and not turned off by GLAMOR_FAST_BF16X3=0.
bool usable(int64_t Dc, int64_t Hd);

// W' = diag(c) W1c split in three, as the dV GEMM needs it: cells-major dV (cells, Dc) = M W'
// takes W' stacked (3 Hd, Dc) packed per column block; channel-major dV^T (Dc, cells) = W'^T M^T
// takes W'^T stacked (Dc, 3 Hd) plain.
struct Weights {
  AlignedVector<uint16_t> bf16;
  bool channel_major = false;
  bool finite = true;  // W' finite (else every tile takes the float32 GEMMs)
};

Weights pack_weights(const float* w1c /* (Hd, ldw): W1c(k, c) = w1c[k * ldw + c] */, int64_t ldw,
                     const float* c /* (Hd) */, int64_t Hd, int64_t Dc, bool channel_major);

// Per-thread buffers and steps for one tile of up to max_cells cells.
class Tile {
 public:
  Tile(int64_t max_cells, int64_t Dc, int64_t Hd);

  // Starts a tile of `cells` cells.
  void begin(int64_t cells);

  // Mask rows [j0, j0 + n) of the tile from the hidden pre-activations z (n, Hd) (bias u not
  // yet added), u (Hd), and the folded BatchNorm's scale / shift (Hd) or nullptr.
  void mask(const float* z, const float* u, const float* scale, const float* shift, int64_t j0, int64_t n);

  // Y_i = ds_i v_i for the tile's cells [j0, j0 + n), channel-major v (v[c * ld + j], j from
  // j0): one call per segment (e.g. per batch element), before add_dw1c(true, ...).
  void split_ct(const float* v, int64_t ld, const float* ds /* (n) */, int64_t j0, int64_t n);
  // Y for all the tile's cells, cell-major v (v[j * ld + c]), before add_dw1c(false, ...).
  void split_tc(const float* v, int64_t ld, const float* ds /* (cells) */);

  // The tile's dW1c GEMM without the factor c: ct, acc (Dc, Hd) += Y^T M; else acc (Hd, Dc) +=
  // M^T Y. False (acc untouched) if some Y_i was not finite: the tile must take the float32 GEMMs.
  bool add_dw1c(bool ct, float* acc);

  // The tile's dV GEMM without the factor ds: cells-major out (cells, Dc) = M W'; channel-major
  // out (Dc, padded_cells()) = W'^T M^T.
  void dv(const Weights& w, float* out);

  // Cells rounded up to 16: the row length of a channel-major dv.
  static int64_t padded(int64_t cells) { return (cells + 15) / 16 * 16; }

  // Releases the AMX state of this thread (call once the thread's tiles are done).
  static void release();

 private:
  int64_t max_cells_, Dc_, Hd_, cells_ = 0, kpad_ = 0;
  uint32_t bad_ = 0;  // a split value was not finite
  int64_t kpad_max() const { return (max_cells_ + 31) / 32 * 32; }
  AlignedVector<uint16_t> a_mask_;  // (cells, 3 Hd): M three times, the cells-major dV GEMM's A
  AlignedVector<uint16_t> b_mask_;  // ct dW1c's B: (3 kpad, Hd) packed; channel-major dV's B: (3 Hd, padded) packed
  AlignedVector<uint16_t> a_y_;     // ct: (Dc, 3 kpad) hi | mid | lo of Y^T;  else: (Hd, 3 kpad) M^T three times
  AlignedVector<uint16_t> b_y_;     // cell-major v: (3 kpad, Dc) packed hi; mid; lo of Y
  AlignedVector<float> zeros_;      // (Dc): the padding cell of split_pairs
};

// dW1c (Hd, Dc) row-major += c_k acc(k, c), acc as Tile::add_dw1c left it (Dc, Hd) when ct, else (Hd, Dc).
void scale_add_dw1c(const float* acc, bool ct, const float* c, int64_t Hd, int64_t Dc, float* dw1c);

}  // namespace bf16x3
}  // namespace cpu
}  // namespace glamor_fast
