#pragma once
// Compact Unicode tables generated from CPython's database (tools/gen/gen_unicode_tables.py):
// exactly the properties the reference tokenizer's Python code consults.
#include <cstddef>
#include <cstdint>

namespace sd::unicode_data {

extern const char kUnicodeVersion[];

// Sorted (first_code_point << 8) | properties; a run lasts until the next entry starts.
// Properties: bits 0-2 class (kClass*), bit 3 str.isspace(), bits 4-5 case (kCase*).
enum : uint32_t {
  kClassOther = 0,
  kClassLetter = 1,   // \p{L}
  kClassNumber = 2,   // \p{N}
  kClassDropped = 3,  // U+0000, U+FFFD and categories C* other than \t \n \r
  kClassSpace = 4,    // " \t\n\r" and Zs: become a plain space
  kIsSpaceBit = 1u << 3,
  kCaseShift = 4,
  kCaseNone = 0,
  kCaseCased = 1,      // Cased and not Case_Ignorable
  kCaseIgnorable = 2,  // Case_Ignorable (whether cased or not: Final_Sigma skips it)
};
extern const uint32_t kPropertyRuns[];
extern const size_t kPropertyRuns_size;

// Simple lower-case mappings: start, start + stride, ... (count code points) map to cp + delta.
struct LowerRun {
  uint32_t start;
  uint16_t count;
  uint8_t stride;
  int32_t delta;
};
extern const LowerRun kLowerRuns[];
extern const size_t kLowerRuns_size;

// Nonzero canonical combining classes, inclusive ranges.
struct CombiningClassRun {
  uint32_t first;
  uint32_t last;
  uint8_t ccc;
};
extern const CombiningClassRun kCombiningClassRuns[];
extern const size_t kCombiningClassRuns_size;

// One level of canonical decomposition (second == 0 for singletons), sorted by code point.
// Bit 31 of `code_point` marks a primary composite (NFC recomposes first + second into it).
struct Decomposition {
  uint32_t code_point;
  uint32_t first;
  uint32_t second;
};
extern const Decomposition kDecompositions[];
extern const size_t kDecompositions_size;
constexpr uint32_t kComposableBit = 1u << 31;

}  // namespace sd::unicode_data
