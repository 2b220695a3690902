// Shared by the CPU kernels of the encoder block, relu_pool and the stem conv: how their loops
// are compiled for the machine they run on, and the NaN-propagating max / ReLU element maths.
#pragma once

// Each vectorised loop is an always-inline template plus float / double wrappers that GCC on
// x86-64 compiles three times (AVX-512, AVX2+FMA, baseline) and picks at load time, so the build
// stays portable while the loops use the machine's widest vectors. Other compilers build one copy.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define GLAMOR_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define GLAMOR_CPU_CLONES
#endif
#define GLAMOR_CPU_INLINE inline __attribute__((always_inline))

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
