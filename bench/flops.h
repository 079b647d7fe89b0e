#pragma once
// Analytic FLOP counts of the configured models, from their config.json files: what "achieved
// TFLOP/s" is measured against. Each multiply-add counts as 2 FLOPs:
//   Conv2d  out_h * out_w * Cout * Cin * k * k * 2 per sample
//   Linear  tokens * in * out * 2
//   attention matmuls (scores and scores x V)  4 * batch * heads * Nq * Nk * head_dim
// Normalizations, activations, softmax and element-wise adds are left out (a few % at most).
// For SD 1.5 at batch 1 and 64x64 latents this gives 803 GFLOP (conv 444, linear 233, attention 126).
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>

namespace sd_bench {

struct FlopCount {
  double conv = 0, linear = 0, attention = 0;
  double total() const { return conv + linear + attention; }
};

// One UNet forward over `batch` samples (with classifier-free guidance the UNet sees 2 x images)
// of latents latent_h x latent_w, conditioned on `context_tokens` text tokens (77 for CLIP).
FlopCount unet_flops(const nlohmann::json& unet_config, int64_t batch, int64_t latent_h, int64_t latent_w,
                     int64_t context_tokens);
// One VAE decode (post_quant_conv + decoder) of `batch` latents.
FlopCount vae_decode_flops(const nlohmann::json& vae_config, int64_t batch, int64_t latent_h, int64_t latent_w);

// The folder holding unet/, vae/ and text_encoder/ configs for a --model argument: the bundled
// SD 1.5 configs for random:sd-v1-5 and single-file checkpoints, PATH for random:PATH, the folder itself.
std::filesystem::path model_config_dir(const std::string& model);
nlohmann::json read_json_file(const std::filesystem::path& path);

struct ModelFlops {
  FlopCount unet;         // per UNet evaluation at the UNet's batch (2 x batch with guidance)
  FlopCount vae_decode;   // per decode of `batch` images
  int64_t unet_batch = 1;
};
ModelFlops model_flops(const std::string& model, int64_t batch, bool guidance, int64_t height, int64_t width);

}  // namespace sd_bench
