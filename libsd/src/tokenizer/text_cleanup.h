#pragma once
// The text clean-up transformers' CLIPTokenizer applies when ftfy is not installed
// (BasicTokenizer(strip_accents=False, do_split_on_punc=False)), joined back with single spaces.
#include <string>
#include <string_view>

namespace sd::tokenizer {

// In order: drop U+0000, U+FFFD and control/format/unassigned characters; every whitespace
// character becomes a space; spaces around CJK ideographs; NFC; split on whitespace;
// lower-case each word; join the words with one space.
std::u32string clean_text(std::u32string_view text);

}  // namespace sd::tokenizer
