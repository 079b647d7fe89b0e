#include "tokenizer/text_cleanup.h"

#include "tokenizer/unicode.h"

namespace sd::tokenizer {

std::u32string clean_text(std::u32string_view text) {
  using unicode::CharClass;
  std::u32string cleaned;
  cleaned.reserve(text.size());
  for (char32_t cp : text) {
    switch (unicode::char_class(cp)) {
      case CharClass::kDropped:
        break;
      case CharClass::kSpace:
        cleaned.push_back(U' ');
        break;
      default:
        if (unicode::is_cjk_ideograph(cp)) {
          cleaned.push_back(U' ');
          cleaned.push_back(cp);
          cleaned.push_back(U' ');
        } else {
          cleaned.push_back(cp);
        }
    }
  }
  // The reference normalizes after the clean-up above, so characters NFC creates are not re-checked.
  const std::u32string normalized = unicode::to_nfc(cleaned);

  // Python's str.split() also splits on U+2028/U+2029, which the clean-up keeps. Lower-casing whole
  // words at once is the same as the reference's per-word lower(): the separators are neither cased
  // nor case-ignorable, so Final_Sigma never looks past them.
  std::u32string joined;
  joined.reserve(normalized.size());
  size_t i = 0;
  while (i < normalized.size()) {
    while (i < normalized.size() && unicode::is_python_space(normalized[i])) ++i;
    size_t j = i;
    while (j < normalized.size() && !unicode::is_python_space(normalized[j])) ++j;
    if (j > i) {
      if (!joined.empty()) joined.push_back(U' ');
      joined += std::u32string_view(normalized).substr(i, j - i);
    }
    i = j;
  }
  return unicode::to_lower(joined);
}

}  // namespace sd::tokenizer
