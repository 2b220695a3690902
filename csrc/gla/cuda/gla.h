// Launchers of the GLA CUDA kernels (gla.cu). Plain C++: raw pointers, element
// strides, a dtype tag and the stream as void*, so the binding needs no CUDA-specific types.
#pragma once
#include <cstdint>

namespace glamor_fast {
namespace cuda {

// Storage dtype of context / dcontext / pooled / attn. Accumulation is float32, or float64 for
// F64; every "acc" pointer below points to that accumulation type.
enum class Dtype { F32, F64, F16, BF16 };

struct Cells {
  const void* data;  // context (B, Dc, H, W), storage dtype
  int64_t sb, sc, sh, sw;  // element strides
  int64_t B, Dc, H, W;
};

struct Weights {
  const void* u;      // (B, Hd) acc: W1f f + b1
  const void* w1c;    // (Hd, Dc) acc, contiguous
  const void* w1c_t;  // (Dc, Hd) acc, contiguous (the transpose, for coalesced reads)
  const void* w2;     // (Hd) acc
  const void* scale;  // (Hd) acc or nullptr
  const void* shift;  // (Hd) acc or nullptr
  double b2;
  int64_t Hd;
};

// Cells per block (one block per (chunk, b)), and the number of chunks for N cells.
constexpr int64_t kChunk = 64;
inline int64_t num_chunks(int64_t N) { return (N + kChunk - 1) / kChunk; }

struct ForwardOut {
  void* state;   // (B, chunks, Dc + 2) acc workspace
  void* scores;  // (B, N) acc workspace
  void* pooled;  // (B, Dc) storage dtype, contiguous
  void* attn;    // (B, N) storage dtype, contiguous
  void* lse;     // (B) acc
};

struct BackwardIn {
  const void* gp;     // (B, Dc) acc, contiguous
  const void* t;      // (B, N) acc, contiguous: t_i = gp . v_i + ga_i
  const void* delta;  // (B) acc: sum_i a_i t_i - g_lse, from the same t
  const void* lse;    // (B) acc
  const void* attn;   // (B, N) acc, contiguous: the forward's probabilities, or nullptr (16-bit)
};

struct BackwardOut {
  void* dctx;  // (B, Dc, H, W) storage dtype with strides below, or nullptr
  int64_t sb, sc, sh, sw;
  void* dz;    // (B * N, Hd) acc: dL/dz per cell, or nullptr (then dW1c is not wanted)
  void* vec;   // (B, chunks, 4 * Hd) float64: per-block sums of dw2, dgamma, dbeta, du
};

// Both return 0 or a cudaError_t value.
int gla_forward_launch(Dtype dtype, const Cells& cells, const Weights& w, const ForwardOut& out,
                       void* stream);
int gla_backward_launch(Dtype dtype, const Cells& cells, const Weights& w, const BackwardIn& in,
                        const BackwardOut& out, void* stream);

}  // namespace cuda
}  // namespace glamor_fast
