#include "pipeline/model_source.h"

#include <cstdlib>

#include "core/log_macros.h"
#include "sd/error.h"
#include "sd/pipeline.h"

namespace sd {
namespace fs = std::filesystem;

namespace {

const char* kRandomPrefix = "random:";

int64_t inpainting_channels(int64_t latent_channels) { return 2 * latent_channels + 1; }

// An ordinary UNet takes the latents; an inpainting UNet also the mask and the masked image's latents.
void check_unet_channels(const ModelConfigs& c, const std::string& origin) {
  const int64_t latent = c.vae.latent_channels;
  SD_CHECK(c.unet.in_channels == latent || c.unet.in_channels == inpainting_channels(latent), origin,
           ": the UNet's in_channels ", c.unet.in_channels, " fits neither the VAE's latent_channels ", latent,
           " nor an inpainting model's ", inpainting_channels(latent), " (latents + mask + masked-image latents)");
  SD_CHECK(c.unet.out_channels == latent, origin, ": the UNet's out_channels ", c.unet.out_channels,
           " differs from the VAE's latent_channels ", latent);
}

// Inpainting checkpoints (SD 1.5/2.x inpainting) are single files with the configs of their base model:
// their first convolution says how many channels the UNet takes, as other single-file loaders read it.
void adopt_checkpoint_unet_channels(const SafetensorsFile& checkpoint, ModelConfigs& configs) {
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

}  // namespace

const char* model_format_name(ModelFormat format) {
  switch (format) {
    case ModelFormat::kRandom:
      return "random";
    case ModelFormat::kDiffusers:
      return "diffusers";
    case ModelFormat::kSingleFile:
      return "single-file";
  }
  return "?";
}

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

ModelConfigs read_model_configs(const fs::path& dir) {
  for (const char* part : {"text_encoder/config.json", "unet/config.json", "vae/config.json",
                           "scheduler/scheduler_config.json"}) {
    SD_CHECK(fs::exists(dir / part), dir.string(), ": missing ", part, " (not a diffusers model folder?)");
  }
  ModelConfigs c;
  c.text = CLIPTextConfig::from_file(dir / "text_encoder/config.json");
  c.unet = UNetConfig::from_file(dir / "unet/config.json");
  c.vae = VAEConfig::from_file(dir / "vae/config.json");
  c.scheduler = SchedulerConfig::from_json_file(dir / "scheduler/scheduler_config.json");
  SD_CHECK(c.text.hidden_size == c.unet.cross_attention_dim, dir.string(), ": text encoder hidden_size ",
           c.text.hidden_size, " differs from the UNet's cross_attention_dim ", c.unet.cross_attention_dim);
  check_unet_channels(c, dir.string());
  return c;
}

bool is_ldm_checkpoint(const SafetensorsFile& file) {
  for (const auto& entry : file.entries()) {
    if (entry.name.rfind("model.diffusion_model.", 0) == 0) return true;
  }
  return false;
}

fs::path model_config_dir(const std::string& model, const fs::path& config_dir) {
  if (model.rfind(kRandomPrefix, 0) == 0) return random_model_configs(model);
  if (fs::is_directory(model)) return model;
  SD_CHECK(fs::exists(model), model, ": no such file or folder (or use random:sd-v1-5)");
  // A single file carries no configs or tokenizer.
  return config_dir.empty() ? bundled_sd15_dir() : config_dir;
}

ModelSource resolve_model(const std::string& model, const fs::path& config_dir) {
  ModelSource out;
  out.config_dir = model_config_dir(model, config_dir);
  if (model.rfind(kRandomPrefix, 0) == 0) {
    out.format = ModelFormat::kRandom;
  } else if (fs::is_directory(model)) {
    out.format = ModelFormat::kDiffusers;
    SD_CHECK(fs::exists(out.config_dir / "model_index.json"), out.config_dir.string(),
             ": missing model_index.json (not a diffusers model folder?)");
  } else {
    out.format = ModelFormat::kSingleFile;
  }
  out.configs = read_model_configs(out.config_dir);
  if (out.format == ModelFormat::kSingleFile) {
    out.checkpoint.emplace(fs::path(model));
    adopt_checkpoint_unet_channels(*out.checkpoint, out.configs);
  }
  return out;
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

}  // namespace sd
