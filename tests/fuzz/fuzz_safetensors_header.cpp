// libFuzzer target for the safetensors header parser: any byte string, read as a whole file, must
// either parse into a header whose tensors tile the data section exactly, or throw sd::Error.
// Anything else (another exception, a sanitizer report, a timeout, memory blow-up) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "sd/error.h"
#include "sd/safetensors.h"

#include <c10/core/ScalarType.h>

namespace {

// What a successful parse promises its callers (SafetensorsFile builds views from it unchecked).
void check_invariants(const sd::SafetensorsHeader& header, uint64_t file_size) {
  if (header.data_offset < 8 || header.data_offset > file_size) std::abort();
  uint64_t expected_begin = 0;
  for (const auto& t : header.tensors) {
    if (t.data_begin != expected_begin || t.data_end < t.data_begin) std::abort();
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0 || __builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel)) std::abort();
    }
    if (numel * c10::elementSize(t.dtype) != t.data_end - t.data_begin) std::abort();
    expected_begin = t.data_end;
  }
  if (header.data_offset + expected_begin != file_size) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The whole input is the file; the fuzzer's buffer is exactly `size` bytes, so ASan catches any
  // read past what the parser was given.
  try {
    check_invariants(sd::parse_safetensors_header(data, size, size, "fuzz-input"), size);
  } catch (const sd::Error&) {
  }
  // The same bytes as the first part of a longer file whose tail was not read: the parser must
  // still stay within `size` bytes.
  try {
    (void)sd::parse_safetensors_header(data, size, uint64_t{size} + 4096, "fuzz-prefix");
  } catch (const sd::Error&) {
  }
  return 0;
}
