#pragma once
// A VAE from elsewhere replacing the model's (LoadOptions::vae, `sd generate --vae PATH`): a
// diffusers vae/ folder (config.json + diffusion_pytorch_model.safetensors; a whole model folder's
// vae/ too), or one .safetensors file: a standalone VAE checkpoint with the original LDM names
// (the "vae-ft-mse-840000-ema-pruned" kind: encoder.*, decoder.*, quant_conv.*, post_quant_conv.*,
// with or without "first_stage_model."), or diffusers' names. A single file carries no config: it
// must fit the model's vae/config.json. Everything is checked before binding, and each problem is
// one sd::Error line naming the file: a file that is some other model (a UNet, a TAESD, a LoRA)
// says what it looks like; a tensor that does not fit names it with both shapes.
#include <filesystem>
#include <string>

#include "models/configs.h"
#include "models/vae.h"
#include "sd/safetensors.h"

namespace sd {

struct SeparateVae {
  VAEConfig config;         // the folder's own; a single file's: the model's
  std::string config_origin;
  StateDict weights;        // diffusers names, as views of the mapped file
  StateDict file_tensors;   // LDM files: the tensors under the file's own names (for messages)
  std::filesystem::path file;
  std::string layout;       // "diffusers folder", "single file, LDM names", "single file, diffusers names"
  std::string source() const { return file.string() + " (" + layout + ")"; }  // ModelInfo::vae_source
};

// Reads `path` (a folder or a file) and checks it against the model's VAE: the latent channels and
// the downscale factor must be the model's (its UNet and image sizes depend on them); a single
// file's shapes are checked against `model_config` (read from `model_config_origin`).
SeparateVae read_separate_vae(const std::filesystem::path& path, const VAEConfig& model_config,
                              const std::string& model_config_origin, const std::string& variant);

// Binds the weights into `vae` (built from vae.config), skipping the tensors under
// `ignore_prefixes` (the encoder's, without LoadOptions::vae_encoder). A tensor of the wrong shape,
// a missing or an extra one is one error line naming the file's tensor.
void bind_separate_vae(AutoencoderKL& vae, const SeparateVae& vae_file, const std::vector<std::string>& ignore_prefixes);

}  // namespace sd
