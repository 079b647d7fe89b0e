#pragma once
// CLIP's pre-tokenizer pattern, matched by hand over cleaned text (see clean_text):
//   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// compiled by the reference with the `regex` module and IGNORECASE.
#include <string>
#include <string_view>
#include <vector>

namespace sd::tokenizer {

// The pattern's matches, left to right, as views into `text` (what re.findall returns).
std::vector<std::u32string_view> pre_tokenize(std::u32string_view text);

}  // namespace sd::tokenizer
