#include "engine/text.h"

#include "kernels/error.h"

namespace sprig {

size_t utf8_char_length(const std::string& s, size_t i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  const unsigned char c = p[i];
  if (c < 0x80) return 1;
  const size_t len = c >= 0xC2 && c <= 0xDF   ? 2
                     : c >= 0xE0 && c <= 0xEF ? 3
                     : c >= 0xF0 && c <= 0xF4 ? 4
                                              : 0;
  if (len == 0 || i + len > n) return 0;
  for (size_t k = 1; k < len; ++k)
    if ((p[i + k] & 0xC0) != 0x80) return 0;
  const unsigned char c1 = p[i + 1];
  // Overlong forms, UTF-16 surrogates and code points past U+10FFFF.
  if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F) || (c == 0xF0 && c1 < 0x90) ||
      (c == 0xF4 && c1 > 0x8F))
    return 0;
  return len;
}

bool is_valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const size_t len = utf8_char_length(s, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string printable(const std::string& s) {
  static const char* const kHex = "0123456789abcdef";
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t len = utf8_char_length(s, i);
    if (len > 1 || (len == 1 && c >= 0x20 && c != 0x7f && c != '\\')) {
      out.append(s, i, len);
      i += len;
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
      ++i;
    }
  }
  return out;
}

std::string unescape_bytes(const std::string& s) {
  auto hex = [&](size_t at) -> int {
    const char c = at < s.size() ? s[at] : '\0';
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    throw Error("'" + printable(s) + "': a backslash must start an escape \\xNN");
  };
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out += s[i];
      continue;
    }
    if (i + 1 >= s.size() || s[i + 1] != 'x') hex(s.size());  // throws
    out += static_cast<char>(hex(i + 2) * 16 + hex(i + 3));
    i += 3;
  }
  return out;
}

}  // namespace sprig
