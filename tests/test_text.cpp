// engine/text.h: telling UTF-8 from arbitrary bytes, and printing either safely.
#include <doctest/doctest.h>

#include <string>

#include "kernels/error.h"
#include "engine/text.h"

using namespace sprig;

TEST_CASE("utf8_char_length accepts well-formed characters and nothing else") {
  CHECK(utf8_char_length("a", 0) == 1);
  CHECK(utf8_char_length("\xC3\xA9", 0) == 2);          // U+00E9
  CHECK(utf8_char_length("\xE2\x82\xAC", 0) == 3);      // U+20AC
  CHECK(utf8_char_length("\xF0\x9F\x8C\xB1", 0) == 4);  // U+1F331
  CHECK(utf8_char_length("\xF4\x8F\xBF\xBF", 0) == 4);  // U+10FFFF, the last code point
  for (const char* bad : {"\xe9", "\x80", "\xC3", "\xC0\xAF", "\xE0\x80\xAF", "\xED\xA0\x80",
                          "\xF4\x90\x80\x80", "\xF5\x80\x80\x80", "\xC3\x28", "\xFF"})
    CHECK_MESSAGE(utf8_char_length(bad, 0) == 0, bad);
  CHECK(is_valid_utf8(""));
  CHECK(is_valid_utf8("r\xC3\xA9sum\xC3\xA9 \xF0\x9F\x8C\xB1"));
  CHECK_FALSE(is_valid_utf8("fm\xe9"));
  CHECK_FALSE(is_valid_utf8("ok\xE2\x82"));  // cut short at the end
}

TEST_CASE("printable keeps UTF-8, escapes the rest, and unescape_bytes reads it back") {
  CHECK(printable("plain/path.safetensors") == "plain/path.safetensors");
  CHECK(printable("caf\xC3\xA9") == "caf\xC3\xA9");
  CHECK(printable("fm\xe9") == "fm\\xe9");
  CHECK(printable("a\nb\x7f") == "a\\x0ab\\x7f");
  CHECK(printable("back\\slash") == "back\\x5cslash");
  // Every byte value, and some mixes, round-trip; the printed form is always valid UTF-8.
  std::string all;
  for (int b = 0; b < 256; ++b) all += char(b);
  for (const std::string& s : {all, std::string("\xC3\xA9\xe9\\x41"), std::string("\\\\"),
                               std::string("\xF0\x9F\x8C"), std::string()}) {
    const std::string p = printable(s);
    CHECK(is_valid_utf8(p));
    CHECK(unescape_bytes(p) == s);
  }
  CHECK(unescape_bytes("\\x41\\x4A\\x4a") == "AJJ");
  for (const char* bad : {"\\", "a\\", "\\x", "\\x4", "\\xg1", "\\y41"})
    CHECK_THROWS_AS(unescape_bytes(bad), Error);
}
