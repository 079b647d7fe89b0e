// PNG and JPEG input through stb_image, with the size limits checked from the header first:
// stb_image has a history of crafted-file bugs, so nothing is decoded before the dimensions are
// known to be sane, and only the two formats we need are compiled in.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>

#include "core/jpeg_check.h"
#include "core/png_check.h"
#include "sd/error.h"
#include "sd/image.h"

#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_NO_STDIO
#define STBI_MAX_DIMENSIONS 16384
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#include <stb_image.h>
#pragma GCC diagnostic pop

namespace sd {
namespace {

static_assert(STBI_MAX_DIMENSIONS == kMaxImageSide, "stb_image's own limit is the documented one");

enum class Format { kPng, kJpeg, kOther };

Format sniff(const unsigned char* p, size_t n) {
  static const unsigned char kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (n >= 8 && std::memcmp(p, kPng, 8) == 0) return Format::kPng;
  if (n >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff) return Format::kJpeg;
  return Format::kOther;
}

// stb_image decodes a JPEG that stops early without complaint (the missing blocks come out gray):
// a complete JPEG ends with the end-of-image marker, possibly followed by padding.
bool jpeg_has_end_marker(const unsigned char* p, size_t n) {
  const size_t window = std::min<size_t>(n, 64);
  for (size_t i = n - window; i + 1 < n; ++i) {
    if (p[i] == 0xff && p[i + 1] == 0xd9) return true;
  }
  return false;
}

// A PNG is complete when its last chunk, IEND, is there.
bool png_has_end_chunk(const unsigned char* p, size_t n) {
  static const unsigned char kIend[8] = {0, 0, 0, 0, 'I', 'E', 'N', 'D'};
  if (n < 12) return false;
  const size_t window = std::min<size_t>(n, 64);
  for (size_t i = n - window; i + 8 <= n; ++i) {
    if (std::memcmp(p + i, kIend, 8) == 0) return true;
  }
  return false;
}

}  // namespace

Image decode_image(const void* data, size_t size, const std::string& origin) {
  SD_CHECK(size > 0, origin, ": empty file, expected a PNG or JPEG image");
  SD_CHECK(static_cast<int64_t>(size) <= kMaxImageFileBytes, origin, ": ", size, " bytes, over the limit of ",
           kMaxImageFileBytes, " bytes for an image file");
  const auto* bytes = static_cast<const unsigned char*>(data);
  const Format format = sniff(bytes, size);
  SD_CHECK(format != Format::kOther, origin, ": not a PNG or JPEG image (unrecognised signature)");
  const char* kind = format == Format::kPng ? "PNG" : "JPEG";
  const int len = static_cast<int>(size);  // fits: size <= kMaxImageFileBytes < INT_MAX
  if (format == Format::kJpeg) {
    // Before stb_image reads anything: even its header-only stbi_info builds the Huffman tables.
    const std::string problem = jpeg_structure_problem(bytes, size);
    SD_CHECK(problem.empty(), origin, ": corrupt JPEG (", problem, ")");
  }

  int width = 0, height = 0, channels = 0;
  SD_CHECK(stbi_info_from_memory(bytes, len, &width, &height, &channels) == 1, origin, ": unreadable ", kind,
           " header (", stbi_failure_reason(), ")");
  SD_CHECK(width > 0 && height > 0, origin, ": zero-sized ", kind, " image (", width, "x", height, ")");
  SD_CHECK(width <= kMaxImageSide && height <= kMaxImageSide, origin, ": ", width, "x", height, " ", kind,
           " image, over the limit of ", kMaxImageSide, " pixels per side");
  SD_CHECK(static_cast<int64_t>(width) * height <= kMaxImagePixels, origin, ": ", width, "x", height, " ", kind,
           " image, over the limit of ", kMaxImagePixels, " pixels");
  SD_CHECK(stbi_is_16_bit_from_memory(bytes, len) == 0, origin, ": 16-bit ", kind,
           " images are not supported (expected 8 bits per channel)");
  if (format == Format::kJpeg) {
    SD_CHECK(jpeg_has_end_marker(bytes, size), origin, ": truncated JPEG (no end-of-image marker)");
  } else {
    SD_CHECK(png_has_end_chunk(bytes, size), origin, ": truncated PNG (no IEND chunk)");
    // Before decoding (stb_image's header read stops at the first IDAT, so its info call is safe).
    const std::string problem = png_structure_problem(bytes, size);
    SD_CHECK(problem.empty(), origin, ": corrupt PNG (", problem, ")");
  }

  int w = 0, h = 0, in_channels = 0;
  std::unique_ptr<stbi_uc, void (*)(void*)> pixels(stbi_load_from_memory(bytes, len, &w, &h, &in_channels, 3),
                                                    stbi_image_free);
  SD_CHECK(pixels != nullptr, origin, ": cannot decode the ", kind, " image (", stbi_failure_reason(), ")");
  SD_CHECK(w == width && h == height, origin, ": ", kind, " decoded to ", w, "x", h, ", its header says ", width,
           "x", height);
  Image image;
  image.width = w;
  image.height = h;
  image.rgb.assign(pixels.get(), pixels.get() + static_cast<size_t>(w) * h * 3);
  return image;
}

Image read_image(const std::filesystem::path& path) {
  const std::string origin = path.string();
  std::error_code ec;
  SD_CHECK(std::filesystem::is_regular_file(path, ec), origin, ": no such image file");
  const auto size = std::filesystem::file_size(path, ec);
  SD_CHECK(!ec, origin, ": cannot read the image file (", ec.message(), ")");
  SD_CHECK(static_cast<int64_t>(size) <= kMaxImageFileBytes, origin, ": ", size, " bytes, over the limit of ",
           kMaxImageFileBytes, " bytes for an image file");
  std::ifstream in(path, std::ios::binary);
  SD_CHECK(in.good(), origin, ": cannot open the image file");
  std::string bytes(static_cast<size_t>(size), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(size));
  SD_CHECK(in.gcount() == static_cast<std::streamsize>(size), origin, ": the image file changed while it was read");
  return decode_image(bytes.data(), bytes.size(), origin);
}

}  // namespace sd
