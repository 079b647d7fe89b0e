#pragma once
// The images of image-to-image and inpainting as the models take them: diffusers'
// VaeImageProcessor (resize with Pillow's Lanczos, to [-1, 1]) and its mask processor (grayscale,
// resize, binarized at 0.5).
#include <ATen/core/Tensor.h>

#include "sd/image.h"

namespace sd {

// The output size for an init image when none is given: its own, rounded down to a multiple of
// `factor` (diffusers' get_default_height_width with the VAE's scale factor).
struct Size2D {
  int width = 0, height = 0;
};
Size2D size_rounded_down(const Image& image, int64_t factor);

// [1, 3, height, width] float32 on the CPU in [-1, 1]: 2 * (byte / 255) - 1 after resizing.
at::Tensor image_to_tensor(const Image& image, int width, int height);

// [1, 1, height, width] float32 on the CPU: 1 where the luma of the resized mask is >= 128 (>= 0.5
// after / 255), else 0.
at::Tensor mask_to_tensor(const Image& mask, int width, int height);

}  // namespace sd
