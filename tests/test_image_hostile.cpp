// Crafted images that fuzz_image found to break stb_image 2.27 (Debian's libstb), refused before
// stb_image decodes them; and the valid seed images of that fuzzer, which must still decode. The
// files are the fuzzer's seed corpus (tests/fuzz/corpus/image/).
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "sd/error.h"
#include "sd/image.h"

namespace {

std::filesystem::path corpus(const std::string& name) {
  return std::filesystem::path(LIBSD_SOURCE_DIR) / "tests/fuzz/corpus/image" / name;
}

std::string error_of(const std::string& name) {
  try {
    sd::read_image(corpus(name));
  } catch (const sd::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("valid PNG and JPEG seeds of the image fuzzer decode", "[unit][image][fuzz]") {
  struct Case {
    const char* name;
    int width, height;
  };
  for (const Case& c : {Case{"rgb.png", 7, 5}, Case{"rgba.png", 7, 5}, Case{"gray.png", 7, 5},
                        Case{"gray_alpha.png", 7, 5}, Case{"palette.png", 7, 5}, Case{"rgb.jpg", 7, 5},
                        Case{"gray.jpg", 7, 5}, Case{"progressive.jpg", 17, 9}, Case{"subsampled.jpg", 16, 16}}) {
    INFO(c.name);
    const sd::Image image = sd::read_image(corpus(c.name));
    CHECK(image.width == c.width);
    CHECK(image.height == c.height);
    CHECK(image.rgb.size() == static_cast<size_t>(c.width) * c.height * 3);
  }
}

TEST_CASE("crafted images that break stb_image are refused with one line", "[unit][image][fuzz]") {
  // A DHT segment whose 16 counts add up to more than 256 codes: stb_image writes past its tables.
  const std::string dht = error_of("jpeg_dht_overflow.jpg");
  CHECK_THAT(dht, Catch::Contains("jpeg_dht_overflow.jpg") && Catch::Contains("corrupt JPEG") &&
                      Catch::Contains("Huffman table") && Catch::Contains("at most 256"));
  // A progressive scan decoding with a Huffman table the file never defined: stb_image reads the
  // uninitialized table and indexes out of bounds.
  const std::string undefined = error_of("jpeg_undefined_huffman.jpg");
  CHECK_THAT(undefined, Catch::Contains("corrupt JPEG") && Catch::Contains("does not define"));
  // A 100-byte PNG whose IDAT claims 2 GB: stb_image allocated 2 GB before reading it.
  const std::string chunk = error_of("png_2gb_chunk.png");
  CHECK_THAT(chunk, Catch::Contains("corrupt PNG") && Catch::Contains("IDAT") && Catch::Contains("claims"));
  for (const std::string& e : {dht, undefined, chunk}) {
    INFO(e);
    CHECK(e.find('\n') == std::string::npos);
  }
  // A zero-length IDAT chunk is legal PNG: an image or an error, never a crash.
  try {
    (void)sd::read_image(corpus("png_empty_idat.png"));
    SUCCEED("decoded");
  } catch (const sd::Error& e) {
    CHECK_THAT(std::string(e.what()), Catch::Contains("png_empty_idat.png"));
  }
}
