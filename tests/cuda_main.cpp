// main() of the CUDA suites (tests/test_cuda_*.cpp): without a usable GPU they report why and
// exit 77, which CTest records as "not run" (SKIP_RETURN_CODE), never as passed.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <string>

#include "engine/backend.h"
#include "kernels/cuda/runtime.cuh"

int main(int argc, char** argv) {
  std::string why;
  if (!sprig::cuda_available(&why)) {
    std::printf("SKIPPED: no usable CUDA device (%s); these tests did not run\n", why.c_str());
    return 77;
  }
  std::printf("CUDA device: %s\n", sprig::cuda::device_name(0).c_str());
  doctest::Context context(argc, argv);
  return context.run();
}
