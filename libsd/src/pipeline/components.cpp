#include "pipeline/components.h"

#include <ATen/CPUGeneratorImpl.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <optional>

#include "core/log_macros.h"
#include "sd/error.h"
#include "sd/safetensors.h"
#include "weights/bind.h"
#include "weights/ldm_to_diffusers.h"

namespace sd {
namespace fs = std::filesystem;

namespace {

const char* kRandomPrefix = "random:";

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

// The weights file of a diffusers component: `stem`[.fp16].safetensors. Pickle files are refused
// by name, since their mere presence tells the user what went wrong.
fs::path component_weights(const fs::path& folder, const std::string& stem, const std::string& variant) {
  const fs::path plain = folder / (stem + ".safetensors");
  const fs::path fp16 = folder / (stem + ".fp16.safetensors");
  if (!variant.empty()) {
    const fs::path wanted = folder / (stem + "." + variant + ".safetensors");
    if (fs::exists(wanted)) return wanted;
  }
  if (fs::exists(plain)) return plain;
  if (fs::exists(fp16)) return fp16;
  // A pickle file where the safetensors one should be: say so by name, it tells what went wrong.
  if (fs::is_directory(folder)) {
    for (const auto& entry : fs::directory_iterator(folder)) {
      const fs::path& p = entry.path();
      SD_CHECK(!(p.stem() == stem && is_pickle_file(p)), p.string(),
               ": pickle weights are never loaded (they can run arbitrary code); convert them to .safetensors");
    }
  }
  SD_FAIL(folder.string(), ": no weights file (expected ", plain.filename().string(), ")");
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

int64_t inpainting_channels(int64_t latent_channels) { return 2 * latent_channels + 1; }

struct Configs {
  CLIPTextConfig text;
  UNetConfig unet;
  VAEConfig vae;
  SchedulerConfig scheduler;
};

// An ordinary UNet takes the latents; an inpainting UNet also the mask and the masked image's latents.
void check_unet_channels(const Configs& c, const std::string& origin) {
  const int64_t latent = c.vae.latent_channels;
  SD_CHECK(c.unet.in_channels == latent || c.unet.in_channels == inpainting_channels(latent), origin,
           ": the UNet's in_channels ", c.unet.in_channels, " fits neither the VAE's latent_channels ", latent,
           " nor an inpainting model's ", inpainting_channels(latent), " (latents + mask + masked-image latents)");
  SD_CHECK(c.unet.out_channels == latent, origin, ": the UNet's out_channels ", c.unet.out_channels,
           " differs from the VAE's latent_channels ", latent);
}

Configs read_configs(const fs::path& dir) {
  for (const char* part : {"text_encoder/config.json", "unet/config.json", "vae/config.json",
                           "scheduler/scheduler_config.json"}) {
    SD_CHECK(fs::exists(dir / part), dir.string(), ": missing ", part, " (not a diffusers model folder?)");
  }
  Configs c;
  c.text = CLIPTextConfig::from_file(dir / "text_encoder/config.json");
  c.unet = UNetConfig::from_file(dir / "unet/config.json");
  c.vae = VAEConfig::from_file(dir / "vae/config.json");
  c.scheduler = SchedulerConfig::from_json_file(dir / "scheduler/scheduler_config.json");
  SD_CHECK(c.text.hidden_size == c.unet.cross_attention_dim, dir.string(), ": text encoder hidden_size ",
           c.text.hidden_size, " differs from the UNet's cross_attention_dim ", c.unet.cross_attention_dim);
  check_unet_channels(c, dir.string());
  return c;
}

// Inpainting checkpoints (SD 1.5/2.x inpainting) are single files with the configs of their base model:
// their first convolution says how many channels the UNet takes, as other single-file loaders read it.
void adopt_checkpoint_unet_channels(const SafetensorsFile& checkpoint, Configs& configs) {
  const char* name = "model.diffusion_model.input_blocks.0.0.weight";
  if (!checkpoint.contains(name)) return;  // the binder reports the missing tensor
  const auto& shape = checkpoint.entry(name).shape;
  if (shape.size() != 4 || shape[1] == configs.unet.in_channels) return;
  const int64_t latent = configs.vae.latent_channels;
  SD_CHECK(shape[1] == inpainting_channels(latent), checkpoint.path().string(), ": tensor '", name,
           "' takes ", shape[1], " input channels; the configs' UNet takes ", configs.unet.in_channels,
           " and an inpainting UNet ", inpainting_channels(latent));
  SD_LOG_INFO(checkpoint.path().string(), ": an inpainting UNet (", shape[1], " input channels)");
  configs.unet.in_channels = shape[1];
}

Components build(const Configs& c, const fs::path& tokenizer_dir, const LoadOptions& options) {
  Components out{CLIPTokenizer::from_folder(tokenizer_dir), nullptr, nullptr, nullptr, {}, {}};
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

// Module constructors initialize their parameters from LibTorch's global generator; whatever they
// draw is overwritten (by the file's weights, or by randomize_weights), so the global generator's
// state is put back as it was: loading a pipeline must not change another computation's random numbers.
class GlobalGeneratorRestorer {
 public:
  GlobalGeneratorRestorer() : generator_(at::detail::getDefaultCPUGenerator()) {
    std::lock_guard<std::mutex> lock(generator_.mutex());
    state_ = generator_.get_state();
  }
  ~GlobalGeneratorRestorer() {
    std::lock_guard<std::mutex> lock(generator_.mutex());
    generator_.set_state(state_);
  }

 private:
  at::Generator generator_;
  at::Tensor state_;
};

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

fs::path bundled_sd15_dir() {
  if (const char* env = std::getenv("LIBSD_WEIGHTS_DIR"); env != nullptr && *env != '\0') {
    return fs::path(env) / "sd-v1-5";
  }
  const fs::path source = fs::path(LIBSD_SOURCE_DIR) / "weights/sd-v1-5";
  if (fs::exists(source / "unet/config.json")) return source;
  return fs::path(LIBSD_INSTALL_DATADIR) / "sd-v1-5";
}

fs::path random_model_configs(const std::string& model) {
  if (model.rfind(kRandomPrefix, 0) != 0) return {};
  const std::string rest = model.substr(std::string(kRandomPrefix).size());
  return rest == "sd-v1-5" ? bundled_sd15_dir() : fs::path(rest);
}

Components load_components(const std::string& model, const LoadOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const bool random = model.rfind(kRandomPrefix, 0) == 0;
  const bool folder = !random && fs::is_directory(model);
  SD_CHECK(random || folder || fs::exists(model), model, ": no such file or folder (or use random:sd-v1-5)");

  // 1. Where the configs and the tokenizer come from.
  fs::path config_dir;
  if (random) {
    config_dir = random_model_configs(model);
  } else if (folder) {
    config_dir = model;
    SD_CHECK(fs::exists(config_dir / "model_index.json"), config_dir.string(),
             ": missing model_index.json (not a diffusers model folder?)");
  } else {
    // A single file carries no configs or tokenizer.
    config_dir = options.config_dir.empty() ? bundled_sd15_dir() : options.config_dir;
  }
  Configs configs = read_configs(config_dir);
  std::optional<SafetensorsFile> checkpoint;
  if (!random && !folder) {
    checkpoint.emplace(fs::path(model));
    adopt_checkpoint_unet_channels(*checkpoint, configs);
  }

  // 2. The modules.
  Components out = [&] {
    GlobalGeneratorRestorer restore;
    return build(configs, config_dir / "tokenizer", options);
  }();
  out.info.format = random ? "random" : folder ? "diffusers" : "single-file";
  if (random) {
    // One seed per module, so the UNet's weights do not depend on the text encoder's size.
    randomize_weights(*out.text_encoder, options.random_seed);
    randomize_weights(*out.unet, options.random_seed + 1);
    randomize_weights(*out.vae, options.random_seed + 2);
  }

  // 3. The weights.
  const std::vector<std::string> text_ignores{"text_model.embeddings.position_ids"};
  if (folder) {
    const fs::path dir(model);
    const fs::path text_file = component_weights(dir / "text_encoder", "model", options.variant);
    bind_component(*out.text_encoder, load_safetensors(text_file), text_file.string(), text_ignores);
    const fs::path unet_file = component_weights(dir / "unet", "diffusion_pytorch_model", options.variant);
    bind_component(*out.unet, load_safetensors(unet_file), unet_file.string(), {});
    const fs::path vae_file = component_weights(dir / "vae", "diffusion_pytorch_model", options.variant);
    StateDict vae_weights = load_safetensors(vae_file);
    rename_legacy_vae_attention(vae_weights);
    bind_component(*out.vae, vae_weights, vae_file.string(), vae_ignores(options.vae_encoder));
  } else if (!random) {
    const fs::path file(model);
    SplitCheckpoint split =
        ldm_to_diffusers(checkpoint->all(), unet_layout_of(configs.unet), vae_layout_of(configs.vae));
    if (!split.unknown.empty()) {
      SD_LOG_WARN(file.string(), ": ", split.unknown.size(), " tensors matched no known name and were ignored (e.g. '",
                  split.unknown.front(), "')");
    }
    bind_component(*out.text_encoder, split.text_encoder, file.string() + " (text encoder)", text_ignores);
    bind_component(*out.unet, split.unet, file.string() + " (UNet)", {});
    bind_component(*out.vae, split.vae, file.string() + " (VAE)", vae_ignores(options.vae_encoder));
  }
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
