#include "pipeline/separate_vae.h"

#include <cctype>
#include <initializer_list>
#include <sstream>
#include <utility>
#include <vector>

#include "core/json_config.h"
#include "core/log_macros.h"
#include "pipeline/components.h"
#include "pipeline/model_source.h"
#include "pipeline/weight_shapes_check.h"
#include "sd/error.h"
#include "weights/bind.h"
#include "weights/ldm_to_diffusers.h"

namespace sd {
namespace fs = std::filesystem;

namespace {

constexpr const char* kLdmVaePrefix = "first_stage_model.";

bool has_prefix(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

bool any_key(const StateDict& weights, std::initializer_list<const char*> prefixes) {
  for (const auto& entry : weights) {
    for (const char* p : prefixes) {
      if (has_prefix(entry.first, p)) return true;
    }
  }
  return false;
}

enum class Names { kLdm, kDiffusers, kNone };

// Which names a single file's VAE tensors have. LDM and diffusers share "encoder."/"decoder." but
// not the block names (LDM "decoder.up.0.block.1", diffusers "decoder.up_blocks.0.resnets.1").
Names vae_names(const StateDict& w) {
  if (any_key(w, {kLdmVaePrefix})) return Names::kLdm;
  if (any_key(w, {"encoder.layers.", "decoder.layers."})) return Names::kNone;  // AutoencoderTiny
  if (any_key(w, {"encoder.down_blocks.", "encoder.mid_block.", "decoder.up_blocks.", "decoder.mid_block."})) {
    return Names::kDiffusers;
  }
  if (any_key(w, {"encoder.down.", "encoder.mid.", "decoder.up.", "decoder.mid.", "post_quant_conv."})) {
    return Names::kLdm;
  }
  return Names::kNone;
}

// What a safetensors file without VAE tensors holds, by its key names: the error says so.
std::string what_it_looks_like(const StateDict& w) {
  // madebyollin's original TAESD files number their nn.Sequential layers: "1.weight", "3.conv.0.bias".
  if (any_key(w, {"encoder.layers.", "decoder.layers."}) || std::isdigit(static_cast<unsigned char>(w.begin()->first[0]))) {
    return "a tiny autoencoder (TAESD): load it with vae_tiny (--vae-tiny)";
  }
  if (any_key(w, {"model.diffusion_model."})) return "a Stable Diffusion checkpoint without its VAE (a UNet)";
  if (any_key(w, {"down_blocks.", "up_blocks.", "time_embedding."})) return "a diffusers UNet";
  if (any_key(w, {"text_model.", "cond_stage_model."})) return "a text encoder";
  if (any_key(w, {"lora_unet_", "lora_te_", "unet.", "text_encoder."})) return "a LoRA: load it with loras (--lora)";
  return "something else: no key starts with encoder., decoder., post_quant_conv. or first_stage_model. (first key '" +
         w.begin()->first + "')";
}

// A standalone LDM VAE file names its tensors without "first_stage_model."; the conversion of
// full checkpoints (weights/ldm_to_diffusers.h) expects it. A full checkpoint's other parts (UNet,
// text encoder) are left out: only its VAE is wanted here.
StateDict as_checkpoint_vae(const StateDict& file) {
  StateDict out;
  for (const auto& [key, tensor] : file) {
    if (has_prefix(key, kLdmVaePrefix) || has_prefix(key, "model_ema.")) {
      out.emplace(key, tensor);
    } else if (has_prefix(key, "encoder.") || has_prefix(key, "decoder.") || has_prefix(key, "quant_conv.") ||
               has_prefix(key, "post_quant_conv.") || has_prefix(key, "loss.")) {
      out.emplace(kLdmVaePrefix + key, tensor);
    }
  }
  return out;
}

// The file's own name of a key of as_checkpoint_vae(file).
std::string file_key(const StateDict& file, const std::string& key) {
  return file.count(key) ? key : key.substr(std::string(kLdmVaePrefix).size());
}

std::string shape_text(c10::IntArrayRef shape) {
  std::ostringstream s;
  s << shape;
  return s.str();
}

void read_folder(const fs::path& path, const std::string& variant, SeparateVae& out) {
  // A whole model folder's VAE is its vae/ subfolder.
  fs::path dir = path;
  if (!fs::exists(dir / "config.json") && fs::exists(dir / "vae/config.json")) dir /= "vae";
  SD_CHECK(fs::exists(dir / "config.json"), path.string(),
           ": no config.json (a diffusers VAE folder has config.json and diffusion_pytorch_model.safetensors)");
  const JsonConfig json = JsonConfig::from_file(dir / "config.json");
  const std::string cls = json.get<std::string>("_class_name", "AutoencoderKL");
  SD_CHECK(cls != "AutoencoderTiny", json.origin(),
           ": a tiny autoencoder (TAESD, AutoencoderTiny): load it with vae_tiny (--vae-tiny)");
  SD_CHECK(cls == "AutoencoderKL", json.origin(), ": field '_class_name' = '", cls,
           "': not a VAE (expected AutoencoderKL)");
  out.config = VAEConfig::from_json(json);
  out.config_origin = json.origin();
  out.file = component_weights(dir, "diffusion_pytorch_model", variant);
  out.layout = "diffusers folder";
  out.weights = load_safetensors(out.file);
  rename_legacy_vae_attention(out.weights);
  check_vae_weights(out.config, out.weights, out.config_origin, out.file.string());
}

void read_file(const fs::path& path, const VAEConfig& model_config, const std::string& model_config_origin,
               SeparateVae& out) {
  out.file = path;
  out.config = model_config;
  out.config_origin = model_config_origin;
  StateDict file = load_safetensors(path);
  SD_CHECK(!file.empty(), path.string(), ": the file holds no tensors (expected a VAE)");
  const Names names = vae_names(file);
  std::vector<std::string> unknown;  // LDM keys the conversion has no rule for
  SD_CHECK(names != Names::kNone, path.string(), ": not a VAE; it looks like ", what_it_looks_like(file));
  if (names == Names::kDiffusers) {
    out.layout = "single file, diffusers names";
    out.weights = std::move(file);
    rename_legacy_vae_attention(out.weights);
  } else {
    out.layout = "single file, LDM names";
    if (any_key(file, {"model.diffusion_model."})) {
      SD_LOG_INFO(path.string(), ": a whole Stable Diffusion checkpoint; only its VAE (first_stage_model.*) is used");
    }
    SplitCheckpoint split = ldm_to_diffusers(as_checkpoint_vae(file), UNetLayout{}, vae_layout_of(model_config));
    SD_CHECK(!split.vae.empty(), path.string(), ": not a VAE; it looks like ", what_it_looks_like(file));
    out.weights = std::move(split.vae);
    out.file_tensors = std::move(file);
    unknown = std::move(split.unknown);
  }
  check_vae_weights(model_config, out.weights, model_config_origin, path.string() + " (as diffusers names it)");
  // A VAE key that has no place in the model's layout: a VAE with more blocks or resnets.
  for (const std::string& key : unknown) {
    SD_CHECK(!has_prefix(key, kLdmVaePrefix), path.string(), ": tensor '", file_key(out.file_tensors, key),
             "' has no place in the model's VAE (", model_config_origin, ": ", model_config.block_out_channels.size(),
             " blocks, layers_per_block ", model_config.layers_per_block, "): a VAE of another kind or size");
    SD_LOG_WARN(path.string(), ": tensor '", key, "' is no VAE tensor and was ignored");
  }
}

// The file's own name of `name` (a diffusers name): LDM files are converted key by key until one
// gives it. Only for error messages.
std::string file_name_of(const SeparateVae& vae, const std::string& name) {
  for (const auto& [key, tensor] : vae.file_tensors) {
    StateDict one;
    one.emplace(has_prefix(key, kLdmVaePrefix) ? key : kLdmVaePrefix + key, tensor);
    const SplitCheckpoint split = ldm_to_diffusers(one, UNetLayout{}, vae_layout_of(vae.config));
    if (split.vae.count(name)) return key;
  }
  return name;
}

}  // namespace

SeparateVae read_separate_vae(const fs::path& path, const VAEConfig& model_config,
                              const std::string& model_config_origin, const std::string& variant) {
  SeparateVae out;
  SD_CHECK(!is_pickle_file(path), path.string(),
           ": pickle weights are never loaded (they can run arbitrary code); convert them to .safetensors");
  SD_CHECK(fs::exists(path), path.string(), ": no such VAE file or folder");
  if (fs::is_directory(path)) {
    read_folder(path, variant, out);
  } else {
    read_file(path, model_config, model_config_origin, out);
  }
  // The UNet works in the model's latent space and the image sizes follow its VAE's factor.
  SD_CHECK(out.config.latent_channels == model_config.latent_channels, out.config_origin, ": the VAE has ",
           out.config.latent_channels, " latent channels, the model (", model_config_origin, ") ",
           model_config.latent_channels);
  SD_CHECK(out.config.downscale_factor() == model_config.downscale_factor(), out.config_origin,
           ": the VAE scales images by ", out.config.downscale_factor(), ", the model's (", model_config_origin, ") by ",
           model_config.downscale_factor());
  return out;
}

void bind_separate_vae(AutoencoderKL& vae, const SeparateVae& file, const std::vector<std::string>& ignore_prefixes) {
  const KeyComparison diff = compare_weights(*vae, file.weights, ignore_prefixes);
  const std::string origin = file.file.string();
  if (!diff.mismatched.empty()) {
    const auto& m = diff.mismatched.front();
    const std::string name = file_name_of(file, m.name);
    const auto found = file.file_tensors.count(name) ? file.file_tensors.at(name).sizes() : c10::IntArrayRef(m.file_shape);
    SD_FAIL(origin, ": tensor '", name, "' has shape ", shape_text(found), ", the VAE (", file.config_origin,
            ") expects ", shape_text(m.model_shape), name != m.name ? " (as '" + m.name + "')" : std::string(),
            diff.mismatched.size() > 1 ? " (and " + std::to_string(diff.mismatched.size() - 1) + " more)" : "");
  }
  SD_CHECK(diff.missing.empty(), origin, ": ", diff.missing.size(), " VAE tensors are missing, e.g. '",
           diff.missing.empty() ? "" : diff.missing.front().name, "' (as diffusers names it)");
  SD_CHECK(diff.unexpected.empty(), origin, ": ", diff.unexpected.size(),
           " tensors have no place in the VAE (", file.config_origin, "), e.g. '",
           diff.unexpected.empty() ? "" : file_name_of(file, diff.unexpected.front().name), "'");
  BindOptions options;
  options.origin = origin;
  options.ignore_prefixes = ignore_prefixes;
  load_state_dict(*vae, file.weights, options);
}

}  // namespace sd
