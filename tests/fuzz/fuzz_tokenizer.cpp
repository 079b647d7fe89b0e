// libFuzzer target for the CLIP tokenizer: any byte string as a prompt. Valid UTF-8 must tokenize
// into a well-formed TokenizedPrompt (BOS, the kept tokens, EOS, padding, every id in the
// vocabulary); invalid UTF-8 must throw sd::Error, as tokenizer.h promises. Anything else (another
// exception, a sanitizer report, an abort() from a broken promise, a timeout) is a bug.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string_view>
#include <vector>

#include "sd/error.h"
#include "sd/tokenizer.h"

namespace {

// An independent strict UTF-8 check (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF),
// written separately from the tokenizer's decoder so that the two can disagree.
bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (b < 0x80) {
      ++i;
      continue;
    } else if (b >= 0xC2 && b <= 0xDF) {
      len = 2;
    } else if (b == 0xE0) {
      len = 3, lo = 0xA0;
    } else if (b == 0xED) {
      len = 3, hi = 0x9F;
    } else if (b >= 0xE1 && b <= 0xEF) {
      len = 3;
    } else if (b == 0xF0) {
      len = 4, lo = 0x90;
    } else if (b == 0xF4) {
      len = 4, hi = 0x8F;
    } else if (b >= 0xF1 && b <= 0xF3) {
      len = 4;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    const auto b1 = static_cast<unsigned char>(s[i + 1]);
    if (b1 < lo || b1 > hi) return false;
    for (size_t k = 2; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += len;
  }
  return true;
}

const sd::CLIPTokenizer& tokenizer() {
  // SD 1.5's tokenizer, the one libsd bundles (weights/sd-v1-5/tokenizer).
  static const sd::CLIPTokenizer instance =
      sd::CLIPTokenizer::from_folder(std::string(LIBSD_SOURCE_DIR) + "/weights/sd-v1-5/tokenizer");
  return instance;
}

void check_prompt(const sd::CLIPTokenizer& tok, const sd::TokenizedPrompt& out, const std::vector<int64_t>& raw) {
  const size_t raw_tokens = raw.size();
  const auto max_length = static_cast<size_t>(tok.max_length());
  const auto vocab = static_cast<int64_t>(tok.vocab_size());
  if (out.ids.size() != max_length) std::abort();
  if (out.num_tokens < 0 || static_cast<size_t>(out.num_tokens) != raw_tokens) std::abort();
  const size_t kept = std::min(raw_tokens, max_length - 2);
  if (static_cast<size_t>(out.num_truncated) != raw_tokens - kept) std::abort();
  if (out.ids.front() != tok.bos_id() || out.ids[kept + 1] != tok.eos_id()) std::abort();
  // The second tokenization (now through the word cache) gives the same tokens as the first.
  if (!std::equal(raw.begin(), raw.begin() + static_cast<std::ptrdiff_t>(kept), out.ids.begin() + 1)) std::abort();
  for (size_t i = kept + 2; i < max_length; ++i) {
    if (out.ids[i] != tok.pad_id()) std::abort();
  }
  for (int64_t id : out.ids) {
    if (id < 0 || id >= vocab) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)tokenizer();  // load the vocabulary once, outside the timed inputs
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view prompt(reinterpret_cast<const char*>(data), size);
  const bool valid = is_valid_utf8(prompt);
  const sd::CLIPTokenizer& tok = tokenizer();
  std::optional<std::vector<int64_t>> raw;
  try {
    raw = tok.tokenize_ids(prompt);
  } catch (const sd::Error&) {
    if (valid) std::abort();  // valid UTF-8 must tokenize
    return 0;
  }
  if (!valid) std::abort();  // invalid UTF-8 must be refused, not guessed at
  for (int64_t id : *raw) {
    if (id < 0 || static_cast<size_t>(id) >= tok.vocab_size()) std::abort();
    (void)tok.id_to_token(id);  // throws for an id outside the vocabulary
  }
  check_prompt(tok, tok.encode(prompt), *raw);
  return 0;
}
