#pragma once
// Internal to infer/: text pieces the CPU plan (pack.cpp) and the GPU plan (pack_cuda.cpp) share
// for their "why" lines.
#include <cstdio>
#include <string>

namespace sprig::infer::detail {

// "0.0123" below 0.1 ms, "1.234" above: four significant figures for the plan tables.
inline std::string fmt_ms(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, ms < 0.1 ? "%.4f" : "%.3f", ms);
  return buf;
}

// "92.0%"
inline std::string pct(double f) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * f);
  return buf;
}

}  // namespace sprig::infer::detail
