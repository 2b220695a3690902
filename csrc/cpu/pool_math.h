// Max-pool and ReLU element maths shared by the CPU kernels: NaN-propagating, written as
// compare + select so that loops over channels vectorise.
#pragma once

namespace glamor_fast {
namespace cpu {

// max with NaN winning, as at::max_pool2d on the CPU.
template <typename T>
inline __attribute__((always_inline)) T nan_max(T m, T v) { return (v > m || v != v) ? v : m; }

// relu that keeps NaN, as at::relu (clamp_min) does.
template <typename T>
inline __attribute__((always_inline)) T relu_of(T m) { return (m > T(0) || m != m) ? m : T(0); }

}  // namespace cpu
}  // namespace glamor_fast
