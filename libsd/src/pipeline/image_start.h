#pragma once
// Where image-to-image and inpainting start: diffusers' prepare_latents and prepare_mask_latents
// (StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline @ 0.27), drawing from the
// generation's generator in diffusers' order so that a seed gives diffusers' images.
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "sd/pipeline.h"
#include "sd/scheduler.h"

namespace sd {

struct ImageStart {
  at::Tensor latents;        // the denoising loop's first latents [B, C, h, w], fp32, on the device
  // Inpainting with an ordinary (4-channel) UNet: after every step the latents outside the mask are
  // replaced by image_latents re-noised with `noise` to the next step's level.
  at::Tensor image_latents, noise;
  at::Tensor mask;           // inpainting: [B, 1, h, w], 1 = repaint
  at::Tensor conditioning;   // inpainting UNet: [B, 5, h, w] = mask and masked-image latents
};

// `options` has init_image (and for inpainting a mask); `scheduler` has its timesteps set and
// `begin_index` is the first step that will run; width/height are the output size.
ImageStart prepare_image_start(Pipeline& pipeline, const GenerateOptions& options, double strength,
                               const Scheduler& scheduler, int64_t begin_index, int width, int height,
                               at::Generator& generator, c10::Device device);

}  // namespace sd
