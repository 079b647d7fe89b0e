#pragma once
// The Unicode operations the CLIP tokenizer's Python reference relies on, with CPython's
// semantics: UTF-8 decoding, character classes, str.lower() and NFC normalization.
#include <cstdint>
#include <string>
#include <string_view>

namespace sd::unicode {

// Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF), like Python's decoder.
// Throws sd::Error naming `what`, the byte offset and the offending byte.
std::u32string decode_utf8(std::string_view bytes, std::string_view what);
void append_utf8(std::string& out, char32_t cp);
std::string encode_utf8(std::u32string_view text);

enum class CharClass : uint8_t { kOther = 0, kLetter = 1, kNumber = 2, kDropped = 3, kSpace = 4 };
// Letter/number by general category (L*, N*); kDropped: U+0000, U+FFFD and C* except \t\n\r;
// kSpace: " \t\n\r" and Zs (BasicTokenizer._clean_text's view).
CharClass char_class(char32_t cp);
// Python's str.isspace().
bool is_python_space(char32_t cp);
// BasicTokenizer._is_chinese_char: the CJK ideograph blocks that get spaces around them.
bool is_cjk_ideograph(char32_t cp);

// Python's str.lower(): simple mappings, U+0130's two-character mapping and Final_Sigma.
std::u32string to_lower(std::u32string_view text);
// unicodedata.normalize("NFC", text).
std::u32string to_nfc(std::u32string_view text);

}  // namespace sd::unicode
