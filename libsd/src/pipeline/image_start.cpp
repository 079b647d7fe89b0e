#include "pipeline/image_start.h"

#include <torch/torch.h>

#include "pipeline/image_inputs.h"
#include "sd/error.h"

namespace sd {

ImageStart prepare_image_start(Pipeline& pipeline, const GenerateOptions& options, double strength,
                               const Scheduler& scheduler, int64_t begin_index, int width, int height,
                               at::Generator& generator, c10::Device device) {
  const ModelInfo& info = pipeline.info();
  const int64_t f = info.vae_scale_factor;
  const int64_t batch = options.batch;
  const std::vector<int64_t> shape{batch, info.latent_channels, height / f, width / f};
  auto draw = [&](const std::vector<int64_t>& s) {
    return torch::randn(s, generator, torch::TensorOptions().dtype(torch::kFloat)).to(device);
  };
  at::Tensor given;
  if (options.initial_latents.defined()) {
    SD_CHECK(options.initial_latents.sizes().vec() == shape, "initial latents must be ", c10::IntArrayRef(shape),
             ", got ", options.initial_latents.sizes());
    given = options.initial_latents.to(device, torch::kFloat);
  }
  // One image for the whole batch: encoded once, its latents repeated (diffusers does the same).
  const at::Tensor image = image_to_tensor(*options.init_image, width, height);
  auto encode_for_batch = [&](const at::Tensor& pixels) {
    return pipeline.encode(pixels, &generator).repeat({batch, 1, 1, 1});
  };

  ImageStart out;
  if (!options.mask) {
    // Image-to-image: the image's latents noised to the first step's level.
    const at::Tensor image_latents = encode_for_batch(image);
    const at::Tensor noise = given.defined() ? given : draw(shape);
    out.latents = scheduler.add_noise(image_latents, noise, begin_index);
    return out;
  }

  // Inpainting. At strength 1 the start is pure noise (the image enters only through the mask
  // channels or the blend); below 1 it is the image noised, as for image-to-image.
  const bool from_noise = strength == 1.0;
  const bool blend = info.unet_in_channels == info.latent_channels;
  at::Tensor image_latents;
  if (blend || (!given.defined() && !from_noise)) image_latents = encode_for_batch(image);
  at::Tensor noise;
  if (given.defined()) {
    noise = given;  // diffusers' `latents`: the start whatever the strength
    out.latents = noise * scheduler.init_noise_sigma();
  } else {
    noise = draw(shape);
    out.latents = from_noise ? noise * scheduler.init_noise_sigma() : scheduler.add_noise(image_latents, noise, begin_index);
  }

  const at::Tensor mask = mask_to_tensor(*options.mask, width, height);
  const at::Tensor mask_latent =
      torch::nn::functional::interpolate(mask, torch::nn::functional::InterpolateFuncOptions()
                                                   .size(std::vector<int64_t>{height / f, width / f})
                                                   .mode(torch::kNearest))
          .repeat({batch, 1, 1, 1})
          .to(device);
  out.mask = mask_latent;
  if (blend) {
    // diffusers encodes the masked image here even for a 4-channel UNet, which never uses it; only
    // the draw of its latent sample matters (later steps may draw from the same generator).
    draw({1, info.latent_channels, height / f, width / f});
    out.image_latents = image_latents;
    out.noise = noise;
  } else {
    const at::Tensor masked_image = image * (mask < 0.5);
    out.conditioning = torch::cat({mask_latent, encode_for_batch(masked_image)}, 1);
  }
  return out;
}

}  // namespace sd
