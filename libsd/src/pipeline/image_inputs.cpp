#include "pipeline/image_inputs.h"

#include <torch/torch.h>

#include <array>

#include "sd/error.h"

namespace sd {

Size2D size_rounded_down(const Image& image, int64_t factor) {
  Size2D size;
  size.width = static_cast<int>(image.width - image.width % factor);
  size.height = static_cast<int>(image.height - image.height % factor);
  return size;
}

at::Tensor image_to_tensor(const Image& image, int width, int height) {
  const Image resized = resize_lanczos(image, width, height);
  // numpy's float32 byte / 255.0, then torch's 2x - 1: 2 * q is exact, so this table holds the
  // very values diffusers computes, whatever the compiler contracts.
  std::array<float, 256> value{};
  for (int v = 0; v < 256; ++v) value[v] = 2.0f * (static_cast<float>(v) / 255.0f) - 1.0f;
  auto out = torch::empty({1, 3, height, width}, torch::kFloat);
  auto acc = out.accessor<float, 4>();
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const uint8_t* px = resized.rgb.data() + (static_cast<size_t>(y) * width + x) * 3;
      for (int c = 0; c < 3; ++c) acc[0][c][y][x] = value[px[c]];
    }
  }
  return out;
}

at::Tensor mask_to_tensor(const Image& mask, int width, int height) {
  // diffusers' mask processor resizes first, then converts to grayscale.
  const Image resized = to_grayscale(resize_lanczos(mask, width, height));
  auto out = torch::empty({1, 1, height, width}, torch::kFloat);
  auto acc = out.accessor<float, 4>();
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      acc[0][0][y][x] = resized.rgb[(static_cast<size_t>(y) * width + x) * 3] >= 128 ? 1.0f : 0.0f;
    }
  }
  return out;
}

}  // namespace sd
