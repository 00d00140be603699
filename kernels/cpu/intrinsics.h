#pragma once
// <immintrin.h> for the kernels that use AVX-512 or AVX2 intrinsics. GCC 12's headers build
// some intrinsics from _mm512_undefined_*(), which -Wmaybe-uninitialized and -Wuninitialized
// report as false positives wherever they are inlined; the first include of <immintrin.h> in a
// file decides, so include this one before anything else that includes it. Internal: include
// only from kernels/cpu.
#pragma GCC diagnostic push
#if !defined(__clang__)  // clang has no such warning
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>
#pragma GCC diagnostic pop
