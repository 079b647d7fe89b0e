#include "sd/image.h"

#include <torch/torch.h>

#include "sd/atomic_file.h"
#include "sd/error.h"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-function"
#include <stb_image_write.h>
#pragma GCC diagnostic pop

namespace sd {

at::Tensor to_uint8(const at::Tensor& images01) {
  SD_CHECK(images01.dim() == 4 && images01.size(1) == 3, "images must be [B, 3, H, W], got ", images01.sizes());
  return (images01.detach().to(torch::kCPU, torch::kFloat).clamp(0, 1) * 255.0f)
      .round()
      .to(torch::kUInt8)
      .permute({0, 2, 3, 1})
      .contiguous();
}

std::vector<Image> to_images(const at::Tensor& images01) {
  auto bytes = to_uint8(images01);
  std::vector<Image> out;
  for (int64_t i = 0; i < bytes.size(0); ++i) {
    Image image;
    image.height = static_cast<int>(bytes.size(1));
    image.width = static_cast<int>(bytes.size(2));
    const auto* p = bytes[i].data_ptr<uint8_t>();
    image.rgb.assign(p, p + bytes[i].numel());
    out.push_back(std::move(image));
  }
  return out;
}

void write_png(const std::filesystem::path& path, const Image& image) {
  SD_CHECK(image.width > 0 && image.height > 0 &&
               image.rgb.size() == static_cast<size_t>(image.width) * image.height * 3,
           path.string(), ": image has inconsistent size ", image.width, "x", image.height, " with ",
           image.rgb.size(), " bytes");
  std::string encoded;
  auto append = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data), static_cast<size_t>(size));
  };
  const int ok = stbi_write_png_to_func(append, &encoded, image.width, image.height, 3, image.rgb.data(),
                                        image.width * 3);
  SD_CHECK(ok != 0, path.string(), ": PNG encoding failed");
  write_file_atomic(path, encoded);
}

}  // namespace sd
