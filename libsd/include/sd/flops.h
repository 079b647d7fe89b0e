#pragma once
// Analytic FLOP counts of a model's UNet and VAE decoder, from the configs Pipeline::load reads:
// what "achieved TFLOP/s" is measured against. Each multiply-add counts as 2 FLOPs:
//   Conv2d  out_h * out_w * Cout * Cin * k * k * 2 per sample
//   Linear  tokens * in * out * 2
//   attention matmuls (scores and scores x V)  4 * batch * heads * Nq * Nk * head_dim
// Normalizations, activations, softmax and element-wise adds are left out (a few % at most).
// SD 1.5 at batch 1 and 64x64 latents (512x512 images): 803.3 GFLOP per UNet evaluation (conv
// 443.9, linear 233.3, attention 126.1) and 2514.5 GFLOP per VAE decode.
#include <cstdint>
#include <filesystem>
#include <string>

#include "sd/export.h"

namespace sd {

struct FlopCount {
  double conv = 0, linear = 0, attention = 0;
  double total() const { return conv + linear + attention; }
};

struct ModelFlops {
  FlopCount unet;          // one UNet evaluation at unet_batch samples
  FlopCount vae_decode;    // one decode of `batch` latents
  int64_t unet_batch = 1;  // 2 x batch with classifier-free guidance
  int64_t latent_height = 0, latent_width = 0;
  int64_t context_tokens = 77;  // text tokens the cross-attention sees
};

// `model` as Pipeline::load takes it ("random:sd-v1-5", a diffusers folder, a single file with
// `config_dir` as LoadOptions::config_dir); nothing is built or bound. `batch` images per
// generation, `guidance` for classifier-free guidance (guidance_scale > 1); height/width 0: the
// model's default size, as GenerateOptions.
SD_API ModelFlops model_flops(const std::string& model, int64_t batch, bool guidance, int64_t height = 0,
                              int64_t width = 0, const std::filesystem::path& config_dir = {});

}  // namespace sd
