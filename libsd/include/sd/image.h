#pragma once
// 8-bit RGB images and PNG output.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <vector>

namespace sd {

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;  // row-major HWC, 3 bytes per pixel
};

// [B, 3, H, W] floats in [0, 1] -> B images, rounded as diffusers does (round(x * 255)).
std::vector<Image> to_images(const at::Tensor& images01);
// The same conversion as a uint8 tensor [B, H, W, 3].
at::Tensor to_uint8(const at::Tensor& images01);

// Writes a PNG atomically (temporary file, then rename).
void write_png(const std::filesystem::path& path, const Image& image);

}  // namespace sd
