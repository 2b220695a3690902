// Shared by the CPU kernels of the encoder block, relu_pool and the stem conv: the NaN-propagating
// max / ReLU element maths of their vectorised loops.
#pragma once

#include "common/simd.h"

namespace glamor_fast {
namespace cpu {

// Whether v replaces m in a max that NaN wins, as at::max_pool2d on the CPU (a later NaN wins
// over an earlier one too). Compare + select, so loops over channels vectorise.
template <typename T>
GLAMOR_CPU_INLINE bool max_takes(T m, T v) { return v > m || v != v; }

template <typename T>
GLAMOR_CPU_INLINE T nan_max(T m, T v) { return max_takes(m, v) ? v : m; }

// relu that keeps NaN, as at::relu (clamp_min) does.
template <typename T>
GLAMOR_CPU_INLINE T relu_of(T m) { return (m > T(0) || m != m) ? m : T(0); }

}  // namespace cpu
}  // namespace glamor_fast
