#pragma once
// sprig::Error is the one exception type the library throws for bad input or misuse.
// Messages name the thing that is wrong (shapes, file and offset, flag and allowed values).
#include <sstream>
#include <stdexcept>
#include <string>

namespace sprig {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace sprig

// SPRIG_CHECK(cond, "part", value, "part") throws sprig::Error with the parts concatenated.
#define SPRIG_CHECK(cond, ...)                                               \
  do {                                                                       \
    if (!(cond)) throw ::sprig::Error(::sprig::detail::concat(__VA_ARGS__)); \
  } while (0)
