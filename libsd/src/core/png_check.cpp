#include "core/png_check.h"

#include <cstdint>
#include <cstring>

namespace sd {
namespace {

constexpr size_t kSignatureBytes = 8;
constexpr size_t kChunkOverhead = 12;  // length, type, CRC
constexpr uint32_t kMaxChunkLength = 0x7FFFFFFF;  // the PNG specification's limit

uint32_t read_be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

}  // namespace

std::string png_structure_problem(const unsigned char* data, size_t size) {
  size_t pos = kSignatureBytes;
  while (pos < size) {
    const size_t left = size - pos;
    if (left < kChunkOverhead) return "a chunk header at byte " + std::to_string(pos) + " is cut off";
    const uint32_t length = read_be32(data + pos);
    const std::string type(reinterpret_cast<const char*>(data + pos + 4), 4);
    if (length > kMaxChunkLength || length > left - kChunkOverhead) {
      return "chunk '" + type + "' at byte " + std::to_string(pos) + " claims " + std::to_string(length) +
             " bytes, the file has " + std::to_string(left - kChunkOverhead) + " left";
    }
    if (type == "IEND") return "";
    pos += kChunkOverhead + length;
  }
  return "";  // no IEND: decode_image reports the truncation itself
}

}  // namespace sd
