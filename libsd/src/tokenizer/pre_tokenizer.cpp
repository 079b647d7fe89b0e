#include "tokenizer/pre_tokenizer.h"

#include "tokenizer/unicode.h"

namespace sd::tokenizer {
namespace {

using unicode::CharClass;

// IGNORECASE compares by simple case folding. The text is already lower-case, so the only
// folding left that the pattern's literals can meet is U+017F LATIN SMALL LETTER LONG S ~ 's'.
bool literal_char_matches(char32_t pattern, char32_t c) {
  return c == pattern || (pattern == U's' && c == 0x17F);
}

// Length of `literal` matched at text[pos], or 0.
size_t match_literal(std::u32string_view text, size_t pos, std::u32string_view literal) {
  if (text.size() - pos < literal.size()) return 0;
  for (size_t k = 0; k < literal.size(); ++k)
    if (!literal_char_matches(literal[k], text[pos + k])) return 0;
  return literal.size();
}

// The `regex` module with IGNORECASE matches U+0345 COMBINING GREEK YPOGEGRAMMENI (which folds
// to the letter iota) with neither [\p{L}] nor [^\s\p{L}\p{N}], so findall skips it, like a space.
bool is_unmatched(char32_t c) { return c == 0x345; }

bool is_letter(char32_t c) { return unicode::char_class(c) == CharClass::kLetter; }

bool is_other(char32_t c) {
  if (is_unmatched(c) || unicode::is_python_space(c)) return false;
  const CharClass cls = unicode::char_class(c);
  return cls != CharClass::kLetter && cls != CharClass::kNumber && cls != CharClass::kSpace;
}

constexpr std::u32string_view kAlternatives[] = {U"<|startoftext|>", U"<|endoftext|>", U"'s", U"'t", U"'re",
                                                 U"'ve", U"'m", U"'ll", U"'d"};

}  // namespace

std::vector<std::u32string_view> pre_tokenize(std::u32string_view text) {
  std::vector<std::u32string_view> pieces;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t len = 0;
    // Alternation takes the first alternative that matches, not the longest.
    for (std::u32string_view literal : kAlternatives) {
      if ((len = match_literal(text, pos, literal)) != 0) break;
    }
    const char32_t c = text[pos];
    if (len == 0 && is_letter(c)) {
      len = 1;
      while (pos + len < text.size() && is_letter(text[pos + len])) ++len;
    }
    if (len == 0 && unicode::char_class(c) == CharClass::kNumber) len = 1;
    if (len == 0 && is_other(c)) {
      len = 1;
      while (pos + len < text.size() && is_other(text[pos + len])) ++len;
    }
    if (len == 0) {
      ++pos;  // whitespace (or U+0345): no alternative starts here
      continue;
    }
    pieces.push_back(text.substr(pos, len));
    pos += len;
  }
  return pieces;
}

}  // namespace sd::tokenizer
