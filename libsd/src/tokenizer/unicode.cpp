#include "tokenizer/unicode.h"

#include <algorithm>
#include <unordered_map>
#include <utility>

#include "sd/error.h"
#include "tokenizer/unicode_data.h"

namespace sd::unicode {
namespace {

namespace ud = sd::unicode_data;

uint32_t properties(char32_t cp) {
  const uint32_t key = (static_cast<uint32_t>(cp) << 8) | 0xFF;
  const uint32_t* end = ud::kPropertyRuns + ud::kPropertyRuns_size;
  const uint32_t* it = std::upper_bound(ud::kPropertyRuns, end, key);
  return it == ud::kPropertyRuns ? 0 : (*(it - 1) & 0xFF);
}

uint32_t case_kind(char32_t cp) { return (properties(cp) >> ud::kCaseShift) & 3; }

char32_t simple_lower(char32_t cp) {
  if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
  const ud::LowerRun* begin = ud::kLowerRuns;
  const ud::LowerRun* end = begin + ud::kLowerRuns_size;
  const ud::LowerRun* it =
      std::upper_bound(begin, end, static_cast<uint32_t>(cp),
                       [](uint32_t value, const ud::LowerRun& run) { return value < run.start; });
  if (it == begin) return cp;
  const ud::LowerRun& run = *(it - 1);
  const uint32_t offset = static_cast<uint32_t>(cp) - run.start;
  if (offset % run.stride != 0 || offset / run.stride >= run.count) return cp;
  return static_cast<char32_t>(static_cast<int64_t>(cp) + run.delta);
}

// CPython's handle_capital_sigma: Σ is final when a cased letter precedes it and none follows,
// skipping case-ignorable characters in both directions.
bool is_final_sigma(std::u32string_view text, size_t i) {
  size_t j = i;
  while (j > 0 && case_kind(text[j - 1]) == ud::kCaseIgnorable) --j;
  if (j == 0 || case_kind(text[j - 1]) != ud::kCaseCased) return false;
  size_t k = i + 1;
  while (k < text.size() && case_kind(text[k]) == ud::kCaseIgnorable) ++k;
  return k == text.size() || case_kind(text[k]) != ud::kCaseCased;
}

uint8_t combining_class(char32_t cp) {
  if (cp < 0x300) return 0;
  const ud::CombiningClassRun* begin = ud::kCombiningClassRuns;
  const ud::CombiningClassRun* end = begin + ud::kCombiningClassRuns_size;
  const ud::CombiningClassRun* it =
      std::upper_bound(begin, end, static_cast<uint32_t>(cp),
                       [](uint32_t value, const ud::CombiningClassRun& run) { return value < run.first; });
  if (it == begin) return 0;
  const ud::CombiningClassRun& run = *(it - 1);
  return cp <= run.last ? run.ccc : 0;
}

const ud::Decomposition* find_decomposition(char32_t cp) {
  const ud::Decomposition* begin = ud::kDecompositions;
  const ud::Decomposition* end = begin + ud::kDecompositions_size;
  const uint32_t key = static_cast<uint32_t>(cp);
  const ud::Decomposition* it = std::lower_bound(
      begin, end, key,
      [](const ud::Decomposition& d, uint32_t value) { return (d.code_point & ~ud::kComposableBit) < value; });
  if (it == end || (it->code_point & ~ud::kComposableBit) != key) return nullptr;
  return it;
}

// Hangul syllables decompose and compose arithmetically (Unicode ch. 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
                   kSCount = kLCount * kNCount;

void decompose(char32_t cp, std::u32string& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const char32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const ud::Decomposition* d = cp < 0xC0 ? nullptr : find_decomposition(cp);
  if (d == nullptr) {
    out.push_back(cp);
    return;
  }
  decompose(d->first, out);
  if (d->second != 0) decompose(d->second, out);
}

const std::unordered_map<uint64_t, char32_t>& composition_map() {
  static const std::unordered_map<uint64_t, char32_t> map = [] {
    std::unordered_map<uint64_t, char32_t> m;
    for (size_t i = 0; i < ud::kDecompositions_size; ++i) {
      const ud::Decomposition& d = ud::kDecompositions[i];
      if (d.code_point & ud::kComposableBit)
        m.emplace((uint64_t{d.first} << 32) | d.second, d.code_point & ~ud::kComposableBit);
    }
    return m;
  }();
  return map;
}

// The primary composite of (a, b), or 0.
char32_t compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount)
    return a + (b - kTBase);
  const auto& map = composition_map();
  auto it = map.find((uint64_t{a} << 32) | b);
  return it == map.end() ? 0 : it->second;
}

[[noreturn]] void fail_utf8(std::string_view bytes, std::string_view what, size_t at) {
  SD_FAIL(what, " is not valid UTF-8: byte 0x", std::hex, static_cast<int>(static_cast<unsigned char>(bytes[at])),
          std::dec, " at offset ", at);
}

}  // namespace

std::u32string decode_utf8(std::string_view bytes, std::string_view what) {
  std::u32string out;
  out.reserve(bytes.size());
  size_t i = 0;
  auto fail = [&](size_t at) { fail_utf8(bytes, what, at); };
  while (i < bytes.size()) {
    const unsigned char b0 = static_cast<unsigned char>(bytes[i]);
    if (b0 < 0x80) {
      out.push_back(b0);
      ++i;
      continue;
    }
    size_t len;
    char32_t cp, min;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      len = 2, cp = b0 & 0x1F, min = 0x80;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      len = 3, cp = b0 & 0x0F, min = 0x800;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      len = 4, cp = b0 & 0x07, min = 0x10000;
    } else {
      fail_utf8(bytes, what, i);
    }
    for (size_t k = 1; k < len; ++k) {
      if (i + k >= bytes.size()) fail(i);
      const unsigned char b = static_cast<unsigned char>(bytes[i + k]);
      if ((b & 0xC0) != 0x80) fail(i + k);
      cp = (cp << 6) | (b & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) fail(i);
    out.push_back(cp);
    i += len;
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string encode_utf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t cp : text) append_utf8(out, cp);
  return out;
}

CharClass char_class(char32_t cp) { return static_cast<CharClass>(properties(cp) & 7); }

bool is_python_space(char32_t cp) { return (properties(cp) & ud::kIsSpaceBit) != 0; }

bool is_cjk_ideograph(char32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

std::u32string to_lower(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char32_t cp = text[i];
    if (cp == 0x130) {  // the only unconditional multi-character lower-case mapping
      out.push_back(U'i');
      out.push_back(0x307);
    } else if (cp == 0x3A3) {
      out.push_back(is_final_sigma(text, i) ? 0x3C2 : 0x3C3);
    } else {
      out.push_back(simple_lower(cp));
    }
  }
  return out;
}

std::u32string to_nfc(std::u32string_view text) {
  // ASCII and Latin-1 below U+00C0 neither decompose nor combine: skip the work for them.
  if (std::all_of(text.begin(), text.end(), [](char32_t c) { return c < 0xC0; })) return std::u32string(text);

  std::u32string buf;
  buf.reserve(text.size() + 8);
  for (char32_t cp : text) decompose(cp, buf);

  // Canonical ordering: a stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < buf.size();) {
    if (combining_class(buf[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < buf.size() && combining_class(buf[j]) != 0) ++j;
    std::stable_sort(buf.begin() + static_cast<std::ptrdiff_t>(i), buf.begin() + static_cast<std::ptrdiff_t>(j),
                     [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }

  // Canonical composition: each character joins the last starter unless blocked.
  if (buf.empty()) return buf;
  size_t starter = 0;
  int last_class = combining_class(buf[0]) == 0 ? 0 : 256;
  size_t out = 1;
  for (size_t i = 1; i < buf.size(); ++i) {
    const char32_t cp = buf[i];
    const int cls = combining_class(cp);
    const char32_t composite = compose(buf[starter], cp);
    if (composite != 0 && (last_class < cls || last_class == 0)) {
      buf[starter] = composite;
      continue;
    }
    if (cls == 0) starter = out;
    last_class = cls;
    buf[out++] = cp;
  }
  buf.resize(out);
  return buf;
}

}  // namespace sd::unicode
