#pragma once
// The analytic FLOP counts of sd/flops.h, per model config.
// Ref: diffusers 0.27 UNet2DConditionModel / AutoencoderKL layer structure (only the shapes).
#include <cstdint>

#include "models/configs.h"
#include "sd/flops.h"

namespace sd {

// One UNet forward over `batch` samples (with classifier-free guidance the UNet sees 2 x images)
// of latents latent_h x latent_w, conditioned on `context_tokens` text tokens (77 for CLIP).
FlopCount unet_flops(const UNetConfig& config, int64_t batch, int64_t latent_h, int64_t latent_w,
                     int64_t context_tokens);
// One VAE decode (post_quant_conv + decoder) of `batch` latents.
FlopCount vae_decode_flops(const VAEConfig& config, int64_t batch, int64_t latent_h, int64_t latent_w);

}  // namespace sd
