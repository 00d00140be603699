#pragma once
// Whether this test binary is built with AddressSanitizer (scripts/sanitize.sh builds with
// ASan + UBSan). Instrumented, the kernels run 30-40x slower than in Release (gemm 256^3 on one
// Zen 3 core: 2.2 against 83 GFLOP/s): the suites that train for hundreds of steps train for
// fewer there. What the sanitizers look for (reads out of bounds, use after free, leaks,
// undefined behaviour) the first steps reach as the 200th do; the Release run (scripts/test.sh)
// keeps the full lengths, and every check runs in both.

#include "kernels/asan.h"

namespace sprig::testing {

inline constexpr bool kSanitized = SPRIG_ASAN;

}  // namespace sprig::testing
