// The CPU op's host side without ATen calls around the kernels: one at::empty per returned
// tensor and nothing else. Temporaries come straight from the CPU allocator (``Temps``),
// parameters are read in place when they are already contiguous in the compute type and
// converted element by element otherwise, the small products (u, dface, dW1f) are BLAS calls
// (tiles.h's gemm), and the reductions are plain loops. Every ATen call is host time a tiny
// problem pays per forward and backward (docs/gla.md, "Host path"; bench/overhead.py counts them).
#pragma once
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/core/CPUAllocator.h>

#include <cmath>
#include <vector>

#include "gla/checks.h"
#include "tiles.h"

namespace glamor_fast {
namespace cpu {
namespace host_cpu {

using gla_tiles::gemm;

// Host-side temporary memory for one call, from the CPU allocator (no ATen op, no dispatcher).
class Temps {
 public:
  template <typename U>
  U* take(int64_t n) {
    blocks_.push_back(c10::GetCPUAllocator()->allocate(std::max<int64_t>(n, 1) * sizeof(U)));
    return static_cast<U*>(blocks_.back().get());
  }

 private:
  std::vector<at::DataPtr> blocks_;
};

// t's elements in the compute type T, contiguous: t's own memory when it already is, else a
// converted copy in `tmp` (an ATen call only for a non-contiguous t).
template <typename T>
const T* as_compute(const at::Tensor& t, Temps& tmp) {
  if (t.scalar_type() == c10::CppTypeToScalarType<T>::value && t.is_contiguous()) {
    return t.data_ptr<T>();
  }
  const at::Tensor c = t.contiguous();
  T* out = tmp.take<T>(c.numel());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.scalar_type(), "as_compute", [&] {
    const scalar_t* src = c.data_ptr<scalar_t>();
    for (int64_t i = 0; i < c.numel(); ++i) out[i] = static_cast<T>(src[i]);
  });
  return out;
}

// Where the kernels write a result that `out` (contiguous in its memory format) returns: out's
// memory when it has the compute type T, else a temporary that ``emit`` then converts into it.
template <typename T>
T* target(const at::Tensor& out, Temps& tmp) {
  if (out.scalar_type() == c10::CppTypeToScalarType<T>::value) return out.data_ptr<T>();
  return tmp.take<T>(out.numel());
}

template <typename T>
void emit(const at::Tensor& out, const T* src) {
  if (out.scalar_type() == c10::CppTypeToScalarType<T>::value) return;  // written in place
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "emit", [&] {
    scalar_t* dst = out.data_ptr<scalar_t>();
    for (int64_t i = 0; i < out.numel(); ++i) dst[i] = static_cast<scalar_t>(src[i]);
  });
}

template <typename T>
bool all_finite(const T* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(p[i])) return false;
  }
  return true;
}

// The kernels' parameters (tiles.h's Params) in the compute type T: W1 read in place (or
// converted), W1c^T transposed once, u = face W1f^T + b1 (B, Hd) by one BLAS call, b2 read as a
// number (no aten::item) and whether w2, scale and shift are all finite.
template <typename T>
gla_tiles::Params<T> params(const at::Tensor& face, const at::Tensor& w1, const at::Tensor& b1,
                            const at::Tensor& w2, const at::Tensor& b2, const c10::optional<at::Tensor>& scale,
                            const c10::optional<at::Tensor>& shift, const GlaDims& d, Temps& tmp) {
  gla_tiles::Params<T> P;
  const T* w1p = as_compute<T>(w1, tmp);
  const int64_t ldw = d.Df + d.Dc;
  P.ldw = ldw;
  P.w1c = w1p + d.Df;
  T* w1c_t = tmp.take<T>(d.Dc * d.Hd);
  for (int64_t k = 0; k < d.Hd; ++k) {
    for (int64_t c = 0; c < d.Dc; ++c) w1c_t[c * d.Hd + k] = P.w1c[k * ldw + c];
  }
  P.w1c_t = w1c_t;
  P.w2 = as_compute<T>(w2, tmp);
  P.b2 = *as_compute<T>(b2, tmp);
  P.scale = scale.has_value() ? as_compute<T>(*scale, tmp) : nullptr;
  P.shift = shift.has_value() ? as_compute<T>(*shift, tmp) : nullptr;
  P.finite = all_finite(P.w2, d.Hd) && (P.scale == nullptr || (all_finite(P.scale, d.Hd) && all_finite(P.shift, d.Hd)));
  // u (B x Hd row-major = Hd x B column-major) = b1 + W1f (Hd x Df) face^T (Df x B)
  T* u = tmp.take<T>(d.B * d.Hd);
  const T* b1p = as_compute<T>(b1, tmp);
  for (int64_t b = 0; b < d.B; ++b) std::copy(b1p, b1p + d.Hd, u + b * d.Hd);
  gemm<T>(true, false, d.Hd, d.B, d.Df, T(1), w1p, ldw, as_compute<T>(face, tmp), d.Df, T(1), u, d.Hd);
  P.u = u;
  return P;
}

}  // namespace host_cpu
}  // namespace cpu
}  // namespace glamor_fast
