// How the CPU kernels' vectorised loops are compiled for the machine they run on.
#pragma once

// Each vectorised loop is an always-inline template (GLAMOR_CPU_INLINE) plus float / double
// wrappers (GLAMOR_CPU_CLONES) that GCC on x86-64 compiles three times (AVX-512, AVX2+FMA,
// baseline) and picks at load time, so the build stays portable while the loops use the
// machine's widest vectors. Other compilers build one copy.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define GLAMOR_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define GLAMOR_CPU_CLONES
#endif
#define GLAMOR_CPU_INLINE inline __attribute__((always_inline))
