#pragma once
// Where a model's parts are: the one reading of a model argument (a diffusers folder, a single-file
// checkpoint, "random:...") that loading a pipeline, `sd inspect` (sd/inspect.h) and the FLOP count
// (sd/flops.h) share, so that they agree on configs, weight files, variants and refused formats.
#include <filesystem>
#include <optional>
#include <string>

#include "models/configs.h"
#include "sd/safetensors.h"
#include "sd/scheduler.h"

namespace sd {

// The configs of the four parts, read and checked against each other.
struct ModelConfigs {
  CLIPTextConfig text;
  UNetConfig unet;
  VAEConfig vae;
  SchedulerConfig scheduler;
};

enum class ModelFormat { kRandom, kDiffusers, kSingleFile };
const char* model_format_name(ModelFormat format);  // "random", "diffusers", "single-file"

struct ModelSource {
  ModelFormat format = ModelFormat::kDiffusers;
  std::filesystem::path config_dir;  // the configs and the tokenizer
  ModelConfigs configs;              // a single file's UNet in_channels taken from its conv_in (inpainting)
  std::optional<SafetensorsFile> checkpoint;  // kSingleFile: the mapped file
};

// The folder that holds libsd's bundled SD 1.5 configs and tokenizer (weights/sd-v1-5): the
// LIBSD_WEIGHTS_DIR environment variable, else the source tree, else the install prefix.
std::filesystem::path bundled_sd15_dir();

// The config folder of a "random:" model: "random:sd-v1-5" -> bundled_sd15_dir(), "random:PATH" ->
// PATH. Empty for any other model string.
std::filesystem::path random_model_configs(const std::string& model);

// Where `model`'s configs and tokenizer are: a folder itself, a "random:" model's configs, a single
// file's `config_dir` (empty: the bundled SD 1.5 ones). sd::Error for a path that does not exist.
std::filesystem::path model_config_dir(const std::string& model, const std::filesystem::path& config_dir);

// `model` as Pipeline::load reads it. `config_dir`: a single file's configs (empty: the bundled SD
// 1.5 ones). Reads and checks the configs and maps a single file; binds nothing.
ModelSource resolve_model(const std::string& model, const std::filesystem::path& config_dir);

// The configs of a diffusers-layout folder (text_encoder/, unet/, vae/, scheduler/), checked for
// consistency: the text encoder's width against the UNet's, the UNet's channels against the VAE's.
ModelConfigs read_model_configs(const std::filesystem::path& dir);

// The weights file of a diffusers component: `stem`[.<variant>].safetensors, else the plain one,
// else the fp16 one. A pickle file in its place (stem.bin, .ckpt, ...) is an sd::Error saying why it
// is refused; no file at all, one naming the expected file.
std::filesystem::path component_weights(const std::filesystem::path& folder, const std::string& stem,
                                        const std::string& variant);

// A single-file checkpoint (CompVis/LDM names) rather than some other safetensors file.
bool is_ldm_checkpoint(const SafetensorsFile& file);

// State-dict keys of the text encoder that are not weights (in some checkpoints, not in others).
inline const char* const kTextEncoderNonWeights = "text_model.embeddings.position_ids";

}  // namespace sd
