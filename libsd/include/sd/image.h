#pragma once
// 8-bit RGB images: PNG output, PNG/JPEG input, and Pillow's resizing and grayscale conversion
// (what diffusers' image processor applies to the images of image-to-image and inpainting).
#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "sd/export.h"

namespace sd {

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;  // row-major HWC, 3 bytes per pixel
};

// [B, 3, H, W] floats in [0, 1] -> B images, rounded as diffusers does (round(x * 255)).
SD_API std::vector<Image> to_images(const at::Tensor& images01);
// The same conversion as a uint8 tensor [B, H, W, 3].
SD_API at::Tensor to_uint8(const at::Tensor& images01);

// Writes a PNG atomically (temporary file, then rename).
SD_API void write_png(const std::filesystem::path& path, const Image& image);

// Limits of read_image, checked before any pixel is decoded (no real photograph comes near them).
inline constexpr int kMaxImageSide = 16384;                  // pixels per side
inline constexpr int64_t kMaxImagePixels = 8192LL * 8192;    // 64 Mpx: 192 MB as RGB
inline constexpr int64_t kMaxImageFileBytes = 256LL << 20;   // 256 MiB

// Reads a PNG or JPEG with 8 bits per channel: RGB; RGBA with the alpha dropped, not composited
// (Pillow's convert("RGB")); gray and gray+alpha expanded to RGB; palette images. Every failure
// (no such file, not a PNG/JPEG, 16-bit, truncated, zero-sized, over a limit) is one sd::Error
// naming the file. JPEG decoding (stb_image) may differ from libjpeg's by a level or two.
SD_API Image read_image(const std::filesystem::path& path);
// The same from bytes in memory; `origin` names them in errors.
SD_API Image decode_image(const void* data, size_t size, const std::string& origin);

// Pillow's Image.resize((width, height), Image.LANCZOS) bit for bit: its separable fixed-point
// filter (support 3, widened when downscaling), horizontal pass first, each pass rounded to 8
// bits. Returns a copy when the size is unchanged, as Pillow does.
SD_API Image resize_lanczos(const Image& image, int width, int height);

// Pillow's convert("L") (ITU-R 601-2 luma: (19595 R + 38470 G + 7471 B + 2^15) >> 16), stored with
// R = G = B = L so that it stays an Image.
SD_API Image to_grayscale(const Image& image);

}  // namespace sd
