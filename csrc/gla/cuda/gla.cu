// GLA forward and backward CUDA kernels (maths: docs/gla.md, forward F6-F10, backward B1-B11).
// CUDA headers only: raw pointers, element strides, dtype templates; the stream is passed in.
//
// One block of 8 warps per (chunk of kChunk cells, batch element b). A warp takes one cell at a
// time: it stages the cell's Dc features in shared memory, its lanes split the Hd hidden units
// (z_k = u_k + W1c[k] . v, read through W1c^T so lanes read consecutive addresses), and a
// butterfly shuffle sums the score. Every sum runs in a fixed order: results are deterministic.
// Forward: per block (max, sum, weighted sum) softmax partials, then a merge kernel per b.
// Backward: recomputes z, writes dcontext, per-block sums of dw2/dgamma/dbeta/du, and dz per
// cell for dW1c (one GEMM in the binding).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "gla.h"

namespace glamor_fast {
namespace cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;

__device__ __forceinline__ float to_acc(float x) { return x; }
__device__ __forceinline__ double to_acc(double x) { return x; }
__device__ __forceinline__ float to_acc(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_acc(float x);
template <>
__device__ __forceinline__ float from_acc<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_acc<__half>(float x) { return __float2half(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
template <typename T>
__device__ __forceinline__ T from_acc(double x) { return x; }

__device__ __forceinline__ float exp_acc(float x) { return expf(x); }
__device__ __forceinline__ double exp_acc(double x) { return exp(x); }

// gla.h's num_chunks for device code.
__host__ __device__ __forceinline__ int64_t chunks_of(int64_t N) { return (N + kChunk - 1) / kChunk; }

template <typename A>
__device__ __forceinline__ A warp_sum(A v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ int64_t cell_offset(const Cells& c, int64_t b, int64_t n) {
  return b * c.sb + (n / c.W) * c.sh + (n % c.W) * c.sw;
}

// Stage cell n of batch b into v (Dc) in the accumulation type; lanes split the channels.
template <typename T, typename A>
__device__ __forceinline__ void load_cell(const Cells& cs, int64_t b, int64_t n, int lane, A* v) {
  const T* ctx = static_cast<const T*>(cs.data) + cell_offset(cs, b, n);
  for (int64_t c = lane; c < cs.Dc; c += 32) v[c] = to_acc(ctx[c * cs.sc]);
  __syncwarp();
}

// z_k = u_k + sum_c W1c[k, c] v_c for the lane's k (k = lane, lane + 32, ...).
template <typename A>
__device__ __forceinline__ A hidden_pre(const A* w1c_t, const A* u, const A* v, int64_t Dc,
                                        int64_t Hd, int64_t k) {
  A z = u[k];
  for (int64_t c = 0; c < Dc; ++c) z += w1c_t[c * Hd + k] * v[c];
  return z;
}

template <typename A>
__device__ __forceinline__ A relu(A x) { return x > A(0) ? x : A(0); }

// Forward, one block per (chunk, b). Shared: v [kWarps][Dc], p [kChunk].
template <typename T, typename A>
__global__ void __launch_bounds__(kThreads)
gla_forward_chunk_kernel(Cells cs, Weights w, ForwardOut out) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* v_all = reinterpret_cast<A*>(smem_raw);
  A* p = v_all + kWarps * cs.Dc;
  __shared__ A m_sh, l_sh;
  const int64_t N = cs.H * cs.W, chunks = chunks_of(N), Hd = w.Hd, Dc = cs.Dc;
  const int64_t b = blockIdx.x / chunks, chunk = blockIdx.x % chunks;
  const int64_t n0 = chunk * kChunk;
  const int cnt = static_cast<int>(N - n0 < kChunk ? N - n0 : kChunk);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const A* u = static_cast<const A*>(w.u) + b * Hd;
  const A* w1c_t = static_cast<const A*>(w.w1c_t);
  const A* w2 = static_cast<const A*>(w.w2);
  const A* scale = static_cast<const A*>(w.scale);
  const A* shift = static_cast<const A*>(w.shift);
  A* v = v_all + warp * Dc;
  for (int jj = warp; jj < cnt; jj += kWarps) {
    const int64_t n = n0 + jj;
    load_cell<T, A>(cs, b, n, lane, v);
    A part = 0;
    for (int64_t k = lane; k < Hd; k += 32) {
      A h = relu(hidden_pre(w1c_t, u, v, Dc, Hd, k));
      if (scale != nullptr) h = relu(scale[k] * h + shift[k]);
      part += w2[k] * h;
    }
    const A s = warp_sum(part) + static_cast<A>(w.b2);
    if (lane == 0) {
      p[jj] = s;
      static_cast<A*>(out.scores)[b * N + n] = s;
    }
    __syncwarp();
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    A m = p[0];
    for (int j = 1; j < cnt; ++j) m = p[j] > m ? p[j] : m;
    m_sh = m;
  }
  __syncthreads();
  for (int j = threadIdx.x; j < cnt; j += kThreads) p[j] = exp_acc(p[j] - m_sh);
  __syncthreads();
  A* st = static_cast<A*>(out.state) + (b * chunks + chunk) * (Dc + 2);
  const T* ctx = static_cast<const T*>(cs.data);
  for (int64_t c = threadIdx.x; c < Dc; c += kThreads) {
    A acc = 0;
    for (int j = 0; j < cnt; ++j) acc += p[j] * to_acc(ctx[cell_offset(cs, b, n0 + j) + c * cs.sc]);
    st[c] = acc;
  }
  if (threadIdx.x == 0) {
    A l = 0;
    for (int j = 0; j < cnt; ++j) l += p[j];
    l_sh = l;
    st[Dc] = m_sh;
    st[Dc + 1] = l;
  }
}

// Merge the chunk partials of batch element blockIdx.x; write pooled, lse, attn.
template <typename T, typename A>
__global__ void __launch_bounds__(kThreads)
gla_forward_merge_kernel(Cells cs, ForwardOut out) {
  const int64_t N = cs.H * cs.W, chunks = chunks_of(N), Dc = cs.Dc, b = blockIdx.x;
  const A* st = static_cast<const A*>(out.state) + b * chunks * (Dc + 2);
  A m = st[Dc];
  for (int64_t ch = 1; ch < chunks; ++ch) m = st[ch * (Dc + 2) + Dc] > m ? st[ch * (Dc + 2) + Dc] : m;
  A l = 0;
  for (int64_t ch = 0; ch < chunks; ++ch) l += exp_acc(st[ch * (Dc + 2) + Dc] - m) * st[ch * (Dc + 2) + Dc + 1];
  for (int64_t c = threadIdx.x; c < Dc; c += kThreads) {
    A acc = 0;
    for (int64_t ch = 0; ch < chunks; ++ch) acc += exp_acc(st[ch * (Dc + 2) + Dc] - m) * st[ch * (Dc + 2) + c];
    static_cast<T*>(out.pooled)[b * Dc + c] = from_acc<T>(acc / l);
  }
  if (threadIdx.x == 0) static_cast<A*>(out.lse)[b] = m + log(l);
  // exp(s - m) / l, not exp(s - lse): lse is rounded at |lse|, which would scale every
  // probability by the same relative error (~1e-7 in float32, ~1e-4 for scores ~1e3).
  const A* scores = static_cast<const A*>(out.scores) + b * N;
  for (int64_t i = threadIdx.x; i < N; i += kThreads)
    static_cast<T*>(out.attn)[b * N + i] = from_acc<T>(exp_acc(scores[i] - m) / l);
}

// Backward, one block per (chunk, b). Shared: v [kWarps][Dc], dz [kWarps][Hd],
// vec [kWarps][4 Hd] (dw2, dgamma, dbeta, du; each lane owns its k entries: no races), summed in
// double: they are sums over all B*N cells, and sequential float sums missed the float32 bound
// (twice PyTorch's error) on an H100 (hidden_scale grad, B=3, N=49).
template <typename T, typename A>
__global__ void __launch_bounds__(kThreads)
gla_backward_chunk_kernel(Cells cs, Weights w, BackwardIn in, BackwardOut out) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int64_t N = cs.H * cs.W, chunks = chunks_of(N), Hd = w.Hd, Dc = cs.Dc;
  A* v_all = reinterpret_cast<A*>(smem_raw);
  A* dz_all = v_all + kWarps * Dc;
  double* vec_all = reinterpret_cast<double*>(dz_all + kWarps * Hd);  // kWarps even: 8-byte aligned
  const int64_t b = blockIdx.x / chunks, chunk = blockIdx.x % chunks;
  const int64_t n0 = chunk * kChunk;
  const int cnt = static_cast<int>(N - n0 < kChunk ? N - n0 : kChunk);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const A* u = static_cast<const A*>(w.u) + b * Hd;
  const A* w1c = static_cast<const A*>(w.w1c);
  const A* w1c_t = static_cast<const A*>(w.w1c_t);
  const A* w2 = static_cast<const A*>(w.w2);
  const A* scale = static_cast<const A*>(w.scale);
  const A* shift = static_cast<const A*>(w.shift);
  const A* gp = static_cast<const A*>(in.gp) + b * Dc;
  const A lse = static_cast<const A*>(in.lse)[b];
  const A delta = static_cast<const A*>(in.delta)[b];
  A* v = v_all + warp * Dc;
  A* dz = dz_all + warp * Hd;
  double* vec = vec_all + warp * 4 * Hd;
  for (int64_t i = lane; i < 4 * Hd; i += 32) vec[i] = 0;
  for (int jj = warp; jj < cnt; jj += kWarps) {
    const int64_t n = n0 + jj;
    load_cell<T, A>(cs, b, n, lane, v);
    A part = 0;
    for (int64_t k = lane; k < Hd; k += 32) {
      const A z = hidden_pre(w1c_t, u, v, Dc, Hd, k);
      dz[k] = z;  // z for now; dz below
      A h = relu(z);
      if (scale != nullptr) h = relu(scale[k] * h + shift[k]);
      part += w2[k] * h;
    }
    const A s = warp_sum(part) + static_cast<A>(w.b2);
    // float32/float64: the forward's probabilities (see the merge kernel); 16-bit attn is rounded,
    // so recompute from the float32 lse there.
    const A a = in.attn != nullptr ? static_cast<const A*>(in.attn)[b * N + n] : exp_acc(s - lse);
    // t and delta come from the same values (the binding), so ds is exactly 0 where the softmax
    // is one-hot or N = 1, as PyTorch's softmax backward gives.
    const A ds = a * (static_cast<const A*>(in.t)[b * N + n] - delta);
    for (int64_t k = lane; k < Hd; k += 32) {
      const A z = dz[k];
      const A h1 = relu(z);
      A dh1;
      if (scale != nullptr) {
        const A y = scale[k] * h1 + shift[k];
        vec[k] += ds * relu(y);
        const A dy = y > A(0) ? ds * w2[k] : A(0);
        vec[Hd + k] += dy * h1;
        vec[2 * Hd + k] += dy;
        dh1 = dy * scale[k];
      } else {
        vec[k] += ds * h1;
        dh1 = ds * w2[k];
      }
      const A d = z > A(0) ? dh1 : A(0);
      vec[3 * Hd + k] += d;
      dz[k] = d;
      if (out.dz != nullptr) static_cast<A*>(out.dz)[(b * N + n) * Hd + k] = d;
    }
    __syncwarp();
    if (out.dctx != nullptr) {
      T* dctx = static_cast<T*>(out.dctx) + b * out.sb + (n / cs.W) * out.sh + (n % cs.W) * out.sw;
      for (int64_t c = lane; c < Dc; c += 32) {
        A dv = a * gp[c];
        for (int64_t k = 0; k < Hd; ++k) dv += w1c[k * Dc + c] * dz[k];
        dctx[c * out.sc] = from_acc<T>(dv);
      }
    }
    __syncwarp();
  }
  __syncthreads();
  double* dst = static_cast<double*>(out.vec) + (b * chunks + chunk) * 4 * Hd;
  for (int64_t i = threadIdx.x; i < 4 * Hd; i += kThreads) {
    double acc = 0;
    for (int wp = 0; wp < kWarps; ++wp) acc += vec_all[wp * 4 * Hd + i];
    dst[i] = acc;
  }
}

template <typename K>
cudaError_t allow_smem(K kernel, size_t bytes) {
  if (bytes <= 48 * 1024) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
}

template <typename T, typename A>
int forward_typed(const Cells& cs, const Weights& w, const ForwardOut& out, cudaStream_t stream) {
  const int64_t N = cs.H * cs.W;
  const size_t smem = (kWarps * cs.Dc + kChunk) * sizeof(A);
  cudaError_t err = allow_smem(gla_forward_chunk_kernel<T, A>, smem);
  if (err != cudaSuccess) return err;
  gla_forward_chunk_kernel<T, A><<<static_cast<unsigned>(cs.B * chunks_of(N)), kThreads, smem, stream>>>(cs, w, out);
  gla_forward_merge_kernel<T, A><<<static_cast<unsigned>(cs.B), kThreads, 0, stream>>>(cs, out);
  return cudaGetLastError();
}

template <typename T, typename A>
int backward_typed(const Cells& cs, const Weights& w, const BackwardIn& in, const BackwardOut& out,
                   cudaStream_t stream) {
  const int64_t N = cs.H * cs.W;
  const size_t smem = kWarps * ((cs.Dc + w.Hd) * sizeof(A) + 4 * w.Hd * sizeof(double));
  cudaError_t err = allow_smem(gla_backward_chunk_kernel<T, A>, smem);
  if (err != cudaSuccess) return err;
  gla_backward_chunk_kernel<T, A><<<static_cast<unsigned>(cs.B * chunks_of(N)), kThreads, smem, stream>>>(
      cs, w, in, out);
  return cudaGetLastError();
}

}  // namespace

int gla_forward_launch(Dtype dtype, const Cells& cells, const Weights& w, const ForwardOut& out, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case Dtype::F32: return forward_typed<float, float>(cells, w, out, s);
    case Dtype::F64: return forward_typed<double, double>(cells, w, out, s);
    case Dtype::F16: return forward_typed<__half, float>(cells, w, out, s);
    case Dtype::BF16: return forward_typed<__nv_bfloat16, float>(cells, w, out, s);
  }
  return cudaErrorInvalidValue;
}

int gla_backward_launch(Dtype dtype, const Cells& cells, const Weights& w, const BackwardIn& in,
                        const BackwardOut& out, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case Dtype::F32: return backward_typed<float, float>(cells, w, in, out, s);
    case Dtype::F64: return backward_typed<double, double>(cells, w, in, out, s);
    case Dtype::F16: return backward_typed<__half, float>(cells, w, in, out, s);
    case Dtype::BF16: return backward_typed<__nv_bfloat16, float>(cells, w, in, out, s);
  }
  return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace glamor_fast
