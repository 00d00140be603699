#pragma once
// Text that must be UTF-8 (JSON, safetensors metadata, error lines) built from bytes that need
// not be: Linux file names are any bytes but '/' and NUL, so a path may hold Latin-1 or
// broken sequences. These helpers are how sprig tells the two apart and prints either safely.
#include <cstddef>
#include <string>

namespace sprig {

// The length (1-4) of the well-formed UTF-8 character starting at s[i], or 0 when the bytes
// there are not one (a stray continuation byte, an overlong form, a UTF-16 surrogate, a code
// point past U+10FFFF, or a sequence cut short by the end of s).
size_t utf8_char_length(const std::string& s, size_t i);

bool is_valid_utf8(const std::string& s);

// s for a message or a UTF-8 field: well-formed characters as they are, every other byte and
// each ASCII control character as \xNN (a backslash too, as \x5c, so the form reads back
// unambiguously with unescape_bytes). Valid UTF-8 without controls or backslashes comes back
// unchanged.
std::string printable(const std::string& s);

// The bytes printable() was given: \xNN back to the byte. Throws sprig::Error on a malformed
// escape.
std::string unescape_bytes(const std::string& s);

}  // namespace sprig
