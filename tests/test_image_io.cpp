// Reading images (PNG/JPEG through stb_image, with limits checked before decoding), Pillow's
// grayscale conversion, and SHA-256. Pillow's Lanczos resize is checked against Pillow's own output
// in test_img2img_parity.cpp.
#include <torch/torch.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli_run.h"
#include "scratch.h"
#include "sd/error.h"
#include "sd/image.h"
#include "sd/sha256.h"

// The library keeps its stb copy private (static): the test has its own, for the JPEG writer.
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-function"
#include <stb_image_write.h>
#pragma GCC diagnostic pop

namespace {
namespace fs = std::filesystem;

sd::Image pattern(int width, int height) {
  sd::Image image;
  image.width = width;
  image.height = height;
  image.rgb.resize(static_cast<size_t>(width) * height * 3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      uint8_t* p = &image.rgb[(static_cast<size_t>(y) * width + x) * 3];
      p[0] = static_cast<uint8_t>(x * 255 / std::max(1, width - 1));
      p[1] = static_cast<uint8_t>(y * 255 / std::max(1, height - 1));
      p[2] = static_cast<uint8_t>((x * 7 + y * 13) % 256);
    }
  }
  return image;
}

std::string read_bytes(const fs::path& path) { return cli::slurp(path); }

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

using scratch::error_of;  // the error message of f(), or "" if it did not throw

}  // namespace

TEST_CASE("a PNG written by libsd reads back byte for byte", "[unit][image]") {
  const auto path = cli::temp_dir() / "roundtrip.png";
  const sd::Image image = pattern(37, 21);
  sd::write_png(path, image);
  const sd::Image back = sd::read_image(path);
  CHECK(back.width == 37);
  CHECK(back.height == 21);
  CHECK(back.rgb == image.rgb);
}

TEST_CASE("a JPEG reads as RGB close to what was encoded", "[unit][image]") {
  const sd::Image image = pattern(64, 48);
  std::string encoded;
  auto append = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data), static_cast<size_t>(size));
  };
  REQUIRE(stbi_write_jpg_to_func(append, &encoded, image.width, image.height, 3, image.rgb.data(), 95) != 0);
  const sd::Image back = sd::decode_image(encoded.data(), encoded.size(), "memory.jpg");
  REQUIRE(back.width == 64);
  REQUIRE(back.height == 48);
  double total = 0;
  for (size_t i = 0; i < back.rgb.size(); ++i) total += std::abs(int{back.rgb[i]} - int{image.rgb[i]});
  CHECK(total / back.rgb.size() < 4.0);  // JPEG at quality 95 on smooth gradients

  // Cut before the end-of-image marker: refused, not decoded into gray blocks.
  const std::string cut = encoded.substr(0, encoded.size() / 2);
  CHECK_THAT(error_of([&] { sd::decode_image(cut.data(), cut.size(), "cut.jpg"); }),
             Catch::Contains("cut.jpg") && Catch::Contains("truncated JPEG"));
}

TEST_CASE("bad image files give one line naming the file and the problem", "[unit][image]") {
  const auto dir = cli::temp_dir();
  const auto png = dir / "good.png";
  sd::write_png(png, pattern(16, 16));
  const std::string bytes = read_bytes(png);

  const auto missing = dir / "missing.png";
  CHECK_THAT(error_of([&] { sd::read_image(missing); }), Catch::Contains("missing.png") && Catch::Contains("no such"));

  const auto empty = dir / "empty.png";
  write_bytes(empty, "");
  CHECK_THAT(error_of([&] { sd::read_image(empty); }), Catch::Contains("empty.png") && Catch::Contains("empty"));

  const auto text = dir / "notes.png";
  write_bytes(text, "this is not an image at all");
  CHECK_THAT(error_of([&] { sd::read_image(text); }), Catch::Contains("notes.png") && Catch::Contains("not a PNG or JPEG"));

  const auto truncated = dir / "truncated.png";
  write_bytes(truncated, bytes.substr(0, bytes.size() - 20));
  CHECK_THAT(error_of([&] { sd::read_image(truncated); }),
             Catch::Contains("truncated.png") && Catch::Contains("truncated PNG"));

  // The IHDR chunk claims 20000 x 20000: refused from the header, before any decoding.
  std::string huge = bytes;
  auto put_be32 = [&](size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) huge[at + i] = static_cast<char>((v >> (24 - 8 * i)) & 0xff);
  };
  put_be32(16, 20000);  // width: 8-byte signature, 4-byte length, "IHDR"
  put_be32(20, 20000);  // height
  const auto big = dir / "huge.png";
  write_bytes(big, huge);
  const std::string big_error = error_of([&] { sd::read_image(big); });
  CHECK_THAT(big_error, Catch::Contains("huge.png"));
  CHECK_THAT(big_error, Catch::Contains("limit") || Catch::Contains("unreadable"));

  put_be32(16, 0);  // zero width
  const auto zero = dir / "zero.png";
  write_bytes(zero, huge);
  CHECK_THAT(error_of([&] { sd::read_image(zero); }), Catch::Contains("zero.png"));

  // Every message is one line.
  for (const auto& path : {missing, empty, text, truncated, big, zero}) {
    const std::string e = error_of([&] { sd::read_image(path); });
    INFO(e);
    CHECK(!e.empty());
    CHECK(e.find('\n') == std::string::npos);
  }
}

TEST_CASE("grayscale is Pillow's convert('L') and a same-size resize is a copy", "[unit][image]") {
  sd::Image px;
  px.width = 4;
  px.height = 1;
  px.rgb = {255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 200, 30};
  const sd::Image gray = sd::to_grayscale(px);
  // (19595 R + 38470 G + 7471 B + 32768) >> 16
  CHECK(gray.rgb[0] == 76);
  CHECK(gray.rgb[3] == 150);
  CHECK(gray.rgb[6] == 29);
  CHECK(gray.rgb[9] == static_cast<uint8_t>((10 * 19595 + 200 * 38470 + 30 * 7471 + 32768) >> 16));
  CHECK(gray.rgb[9] == gray.rgb[10]);
  CHECK(gray.rgb[9] == gray.rgb[11]);
  const sd::Image image = pattern(20, 12);
  CHECK(sd::resize_lanczos(image, 20, 12).rgb == image.rgb);
  const sd::Image up = sd::resize_lanczos(image, 33, 7);
  CHECK(up.width == 33);
  CHECK(up.height == 7);
  CHECK(up.rgb.size() == 33u * 7u * 3u);
  CHECK_THROWS_AS(sd::resize_lanczos(image, 0, 7), sd::Error);
}

TEST_CASE("sha256 matches the FIPS 180-4 examples", "[unit][image]") {
  CHECK(sd::sha256_hex("", 0) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sd::sha256_hex("abc", 3) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  CHECK(sd::sha256_hex(two_blocks.data(), two_blocks.size()) ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const std::string million(1000000, 'a');
  const auto path = cli::temp_dir() / "million-a.txt";
  write_bytes(path, million);
  CHECK(sd::sha256_file_hex(path) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
