// libFuzzer target for the image reader (sd::decode_image: PNG and JPEG through stb_image, with the
// dimensions bounded from the header before anything is decoded). Every input must either decode
// into an image within the documented limits whose pixel buffer matches its size, or throw
// sd::Error. The decoded image then goes through what image-to-image does with it (Lanczos resize,
// grayscale for masks). A sanitizer report, another exception, an abort() or a blow-up in memory
// or time is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "sd/error.h"
#include "sd/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sd::Image image;
  try {
    image = sd::decode_image(data, size, "fuzz-input");
  } catch (const sd::Error&) {
    return 0;
  }
  if (image.width <= 0 || image.height <= 0 || image.width > sd::kMaxImageSide || image.height > sd::kMaxImageSide ||
      int64_t{image.width} * image.height > sd::kMaxImagePixels ||
      image.rgb.size() != static_cast<size_t>(image.width) * image.height * 3)
    std::abort();
  // Small images only: the resize is not what is fuzzed here, and a large one would slow the run.
  if (int64_t{image.width} * image.height <= 64 * 64) {
    const sd::Image resized = sd::resize_lanczos(image, image.width / 2 + 1, image.height * 2);
    if (resized.rgb.size() != static_cast<size_t>(resized.width) * resized.height * 3) std::abort();
    const sd::Image gray = sd::to_grayscale(image);
    if (gray.rgb.size() != image.rgb.size()) std::abort();
  }
  return 0;
}
