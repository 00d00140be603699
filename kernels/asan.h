#pragma once
// SPRIG_ASAN is 1 where this translation unit is built with AddressSanitizer (gcc defines
// __SANITIZE_ADDRESS__, clang has __has_feature), else 0. The kernels leave out what the
// instrumentation makes too slow to compile, the CUDA emulator poisons its canaries for ASan, and
// the suites shorten their training runs (tests/sanitized.h).

#if defined(__SANITIZE_ADDRESS__)
#define SPRIG_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SPRIG_ASAN 1
#endif
#endif
#if !defined(SPRIG_ASAN)
#define SPRIG_ASAN 0
#endif
