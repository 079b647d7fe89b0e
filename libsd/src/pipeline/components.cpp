#include "pipeline/components.h"

#include <ATen/CPUGeneratorImpl.h>

#include <chrono>
#include <cmath>
#include <optional>

#include "core/global_generator.h"
#include "core/log_macros.h"
#include "pipeline/model_source.h"
#include "pipeline/separate_vae.h"
#include "pipeline/weight_shapes_check.h"
#include "sd/error.h"
#include "sd/safetensors.h"
#include "weights/bind.h"
#include "weights/ldm_to_diffusers.h"

namespace sd {
namespace fs = std::filesystem;

namespace {

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

void bind_component(torch::nn::Module& module, const StateDict& weights, const std::string& origin,
                    std::vector<std::string> ignore) {
  BindOptions options;
  options.origin = origin;
  options.ignore_prefixes = std::move(ignore);
  load_state_dict(module, weights, options);
}

std::vector<std::string> vae_ignores(bool with_encoder) {
  if (with_encoder) return {};
  return {"encoder.", "quant_conv."};
}

// The configs, weight files and refused formats come from model_source.h.
using Configs = ModelConfigs;

Components build(const Configs& c, const fs::path& tokenizer_dir, const LoadOptions& options) {
  Components out{CLIPTokenizer::from_folder(tokenizer_dir), nullptr, nullptr, nullptr, nullptr, nullptr, {}, {}};
  out.text_encoder = CLIPTextModel(c.text);
  out.unet = UNet2DConditionModel(c.unet);
  out.vae = AutoencoderKL(c.vae, options.vae_encoder);
  out.scheduler_config = c.scheduler;
  out.info.latent_channels = c.vae.latent_channels;
  out.info.vae_scale_factor = c.vae.downscale_factor();
  out.info.vae_scaling_factor = c.vae.scaling_factor;
  out.info.cross_attention_dim = c.unet.cross_attention_dim;
  out.info.unet_in_channels = c.unet.in_channels;
  out.info.default_width = out.info.default_height = c.unet.sample_size * c.vae.downscale_factor();
  out.info.has_vae_encoder = options.vae_encoder;
  out.info.prediction_type = c.scheduler.prediction_type;
  return out;
}

// Random weights, for timing without downloads: every parameter of two or more dimensions (linear,
// convolution and embedding weights) uniform in +-1/sqrt(fan_in), the scale of LibTorch's default
// initialization, and the biases of those layers likewise; norm layers keep their ones and zeros.
// Drawn in parameter order from a generator of its own: the same seed gives the same weights
// whatever else the process does with the global RNG, which is left untouched.
void randomize_weights(torch::nn::Module& module, uint64_t seed) {
  at::Generator generator = at::detail::createCPUGenerator(seed);
  torch::NoGradGuard no_grad;
  for (const auto& child : module.modules(/*include_self=*/true)) {
    const bool norm = dynamic_cast<torch::nn::GroupNormImpl*>(child.get()) != nullptr ||
                      dynamic_cast<torch::nn::LayerNormImpl*>(child.get()) != nullptr;
    if (norm) continue;
    double bound = 0;
    for (auto& item : child->named_parameters(/*recurse=*/false)) {
      auto& p = item.value();
      if (p.dim() >= 2) {
        bound = 1.0 / std::sqrt(static_cast<double>(p.numel() / p.size(0)));
        p.uniform_(-bound, bound, generator);
      }
    }
    for (auto& item : child->named_parameters(/*recurse=*/false)) {
      auto& p = item.value();
      if (p.dim() == 1 && bound > 0) p.uniform_(-bound, bound, generator);
    }
  }
}

}  // namespace

UNetLayout unet_layout_of(const UNetConfig& config) {
  UNetLayout layout;
  layout.num_blocks = static_cast<int>(config.block_out_channels.size());
  layout.layers_per_block = static_cast<int>(config.layers_per_block);
  layout.down_has_attention.clear();
  layout.up_has_attention.clear();
  for (size_t i = 0; i < config.block_out_channels.size(); ++i) {
    layout.down_has_attention.push_back(config.down_has_attention(i));
    layout.up_has_attention.push_back(config.up_has_attention(i));
  }
  return layout;
}

VAELayout vae_layout_of(const VAEConfig& config) {
  VAELayout layout;
  layout.num_blocks = static_cast<int>(config.block_out_channels.size());
  layout.layers_per_block = static_cast<int>(config.layers_per_block);
  return layout;
}

namespace {

// A tiny autoencoder (a file, a folder or "random:taesd") that must fit the model: the same latent
// channels and the VAE's scale factor.
AutoencoderTiny load_tiny_vae_for(const std::string& path, bool with_encoder, const ModelInfo& info,
                                  uint64_t random_seed) {
  AutoencoderTiny tiny{nullptr};
  if (path == "random:taesd") {
    GlobalGeneratorRestorer restore;
    tiny = AutoencoderTiny(TinyVAEConfig{}, with_encoder);
    randomize_weights(*tiny, random_seed);
  } else {
    tiny = load_autoencoder_tiny(path, with_encoder);
  }
  const TinyVAEConfig& c = tiny->config;
  SD_CHECK(c.latent_channels == info.latent_channels, path, ": the tiny autoencoder has ", c.latent_channels,
           " latent channels, the model ", info.latent_channels);
  SD_CHECK(c.upscale_factor() == info.vae_scale_factor, path, ": the tiny autoencoder scales latents by ",
           c.upscale_factor(), ", the model's VAE by ", info.vae_scale_factor);
  return tiny;
}

void attach_tiny_vaes(Components& out, const LoadOptions& options) {
  if (!options.vae_tiny.empty()) {
    out.vae_tiny = load_tiny_vae_for(options.vae_tiny, options.vae_encoder, out.info, options.random_seed + 3);
    out.info.decoder = "AutoencoderTiny";
    out.info.preview_decoder = "AutoencoderTiny";
  }
  if (!options.preview_vae_tiny.empty()) {
    // Previews never encode: the decoder only. "random:taesd" has the same weights in either role.
    out.preview_tiny = load_tiny_vae_for(options.preview_vae_tiny, false, out.info, options.random_seed + 3);
    out.info.preview_decoder = "AutoencoderTiny";
  }
}

}  // namespace

Components load_components(const std::string& model, const LoadOptions& options) {
  const auto start = std::chrono::steady_clock::now();

  // 1. Where the configs, the tokenizer and the weights come from (model_source.h).
  ModelSource source = resolve_model(model, options.config_dir);
  const bool random = source.format == ModelFormat::kRandom;
  const bool folder = source.format == ModelFormat::kDiffusers;
  const fs::path& config_dir = source.config_dir;
  Configs& configs = source.configs;
  std::optional<SafetensorsFile>& checkpoint = source.checkpoint;

  // 2. The weights, as views of the mapped files: only their headers are read here. The configs
  //    are checked against their shapes before any module is built (pipeline/weight_shapes_check.h).
  //    A separate VAE (LoadOptions::vae) first: a file that does not fit fails before the rest loads.
  std::optional<SeparateVae> separate_vae;
  if (!options.vae.empty()) {
    separate_vae = read_separate_vae(options.vae, configs.vae, (config_dir / "vae/config.json").string(),
                                     options.variant);
  }
  const std::vector<std::string> text_ignores{kTextEncoderNonWeights};
  StateDict text_weights, unet_weights, vae_weights;
  std::string text_origin, unet_origin, vae_origin;
  if (folder) {
    const fs::path dir(model);
    const fs::path text_file = component_weights(dir / "text_encoder", "model", options.variant);
    const fs::path unet_file = component_weights(dir / "unet", "diffusion_pytorch_model", options.variant);
    text_weights = load_safetensors(text_file);
    unet_weights = load_safetensors(unet_file);
    text_origin = text_file.string();
    unet_origin = unet_file.string();
    check_text_encoder_weights(configs.text, text_weights, (dir / "text_encoder/config.json").string(), text_origin);
    check_unet_weights(configs.unet, unet_weights, (dir / "unet/config.json").string(), unet_origin);
    if (!separate_vae) {
      const fs::path vae_file = component_weights(dir / "vae", "diffusion_pytorch_model", options.variant);
      vae_weights = load_safetensors(vae_file);
      rename_legacy_vae_attention(vae_weights);
      vae_origin = vae_file.string();
      check_vae_weights(configs.vae, vae_weights, (dir / "vae/config.json").string(), vae_origin);
    }
  } else if (!random) {
    const fs::path file(model);
    SplitCheckpoint split =
        ldm_to_diffusers(checkpoint->all(), unet_layout_of(configs.unet), vae_layout_of(configs.vae));
    if (!split.unknown.empty()) {
      SD_LOG_WARN(file.string(), ": ", split.unknown.size(), " tensors matched no known name and were ignored (e.g. '",
                  split.unknown.front(), "')");
    }
    text_weights = std::move(split.text_encoder);
    unet_weights = std::move(split.unet);
    vae_weights = std::move(split.vae);
    text_origin = file.string() + " (text encoder)";
    unet_origin = file.string() + " (UNet)";
    vae_origin = file.string() + " (VAE)";
    check_text_encoder_weights(configs.text, text_weights, (config_dir / "text_encoder/config.json").string(),
                               text_origin);
    check_unet_weights(configs.unet, unet_weights, (config_dir / "unet/config.json").string(), unet_origin);
    if (!separate_vae) {
      check_vae_weights(configs.vae, vae_weights, (config_dir / "vae/config.json").string(), vae_origin);
    }
  }
  if (separate_vae) configs.vae = separate_vae->config;  // a VAE folder's own config builds the VAE

  // 3. The modules.
  Components out = [&] {
    GlobalGeneratorRestorer restore;
    return build(configs, config_dir / "tokenizer", options);
  }();
  out.info.format = random ? "random" : folder ? "diffusers" : "single-file";
  if (random) {
    // One seed per module, so the UNet's weights do not depend on the text encoder's size.
    randomize_weights(*out.text_encoder, options.random_seed);
    randomize_weights(*out.unet, options.random_seed + 1);
    if (!separate_vae) randomize_weights(*out.vae, options.random_seed + 2);
  } else {
    // 4. The weights bound.
    bind_component(*out.text_encoder, text_weights, text_origin, text_ignores);
    bind_component(*out.unet, unet_weights, unet_origin, {});
    if (!separate_vae) bind_component(*out.vae, vae_weights, vae_origin, vae_ignores(options.vae_encoder));
  }
  if (separate_vae) bind_separate_vae(out.vae, *separate_vae, vae_ignores(options.vae_encoder));
  out.info.vae_source = separate_vae ? separate_vae->source() : random ? "random weights" : vae_origin;
  attach_tiny_vaes(out, options);
  out.info.source = model;
  out.info.text_encoder_parameters = count_parameters(*out.text_encoder);
  out.info.unet_parameters = count_parameters(*out.unet);
  out.info.vae_parameters = count_parameters(*out.vae);
  out.info.load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  SD_LOG_INFO("loaded ", model, " (", out.info.format, ") in ", out.info.load_s, " s: UNet ",
              out.info.unet_parameters / 1e6, "M, VAE ", out.info.vae_parameters / 1e6, "M, text encoder ",
              out.info.text_encoder_parameters / 1e6, "M parameters");
  return out;
}

}  // namespace sd
