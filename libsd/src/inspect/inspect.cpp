// sd::inspect_model: what a model folder or weights file holds and how it differs from what the
// models built from the configs expect. The files are found by pipeline/model_source.h, as
// Pipeline::load finds them, and compared by weights/bind.h, as it binds them.
#include "sd/inspect.h"

#include <torch/torch.h>

#include <algorithm>

#include "core/global_generator.h"
#include "models/clip_text.h"
#include "models/unet.h"
#include "models/vae.h"
#include "pipeline/components.h"
#include "pipeline/model_source.h"
#include "sd/error.h"
#include "sd/safetensors.h"
#include "weights/bind.h"
#include "weights/ldm_to_diffusers.h"

namespace sd {
namespace fs = std::filesystem;

namespace {

int64_t count_elements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

ComponentReport describe(const std::string& name, const std::string& source, const StateDict& weights) {
  ComponentReport out;
  out.name = name;
  out.source = source;
  for (const auto& [key, t] : weights) {  // a std::map: sorted by name
    out.tensors.push_back({key, t.scalar_type(), t.sizes().vec()});
    out.parameters += t.numel();
    ++out.dtypes[safetensors_dtype_name(t.scalar_type())];
  }
  return out;
}

template <class T>
void sort_by_name(std::vector<T>& items) {
  std::sort(items.begin(), items.end(), [](const T& a, const T& b) { return a.name < b.name; });
}

void compare(ComponentReport& component, const torch::nn::Module& module, const StateDict& weights,
             const std::vector<std::string>& ignore_prefixes) {
  KeyComparison keys = compare_weights(module, weights, ignore_prefixes);
  sort_by_name(keys.missing);
  sort_by_name(keys.mismatched);
  component.keys = std::move(keys);
}

// The three parts' weights (diffusers names), as Pipeline::load binds them.
struct PartWeights {
  StateDict text, unet, vae;
};

// Builds the modules from the configs (on the CPU, fp32; the global RNG left as it was) to count
// their parameters and, with `weights`, to compare names and shapes. The VAE is built with its
// encoder: a file without one shows its keys as missing.
void build_and_compare(const ModelConfigs& configs, const PartWeights* weights,
                       std::vector<ComponentReport>& parts) {
  GlobalGeneratorRestorer restore;
  torch::NoGradGuard no_grad;
  {
    CLIPTextModel text(configs.text);
    parts[0].model_parameters = count_parameters(*text);
    if (weights) compare(parts[0], *text, weights->text, {kTextEncoderNonWeights});
  }
  {
    UNet2DConditionModel unet(configs.unet);
    parts[1].model_parameters = count_parameters(*unet);
    if (weights) compare(parts[1], *unet, weights->unet, {});
  }
  {
    AutoencoderKL vae(configs.vae);
    parts[2].model_parameters = count_parameters(*vae);
    if (weights) compare(parts[2], *vae, weights->vae, {});
  }
}

void describe_file(const SafetensorsFile& file, InspectReport& report) {
  report.file_size = file.file_size();
  report.metadata = file.metadata();
  for (const auto& e : file.entries()) {
    report.file_tensors.push_back({e.name, e.dtype, e.shape});
    report.file_parameters += count_elements(e.shape);
  }
}

}  // namespace

size_t InspectReport::differences() const {
  size_t n = 0;
  for (const auto& c : components) n += c.keys ? c.keys->differences() : 0;
  return n;
}

InspectReport inspect_model(const std::string& path, const InspectOptions& options) {
  InspectReport report;
  report.path = path;
  // A file that is no whole checkpoint (a component's weights, a LoRA) has no configs to compare with.
  if (random_model_configs(path).empty() && !fs::is_directory(path) && fs::exists(path)) {
    SafetensorsFile file(path);  // refuses pickle files by name
    if (!is_ldm_checkpoint(file)) {
      report.format = "safetensors";
      describe_file(file, report);
      return report;
    }
  }

  ModelSource source = resolve_model(path, options.config_dir);
  report.format = model_format_name(source.format);
  report.config_dir = source.config_dir;
  const ModelConfigs& configs = source.configs;

  if (source.format == ModelFormat::kRandom) {
    report.components = {ComponentReport{}, ComponentReport{}, ComponentReport{}};
    report.components[0].name = "text_encoder";
    report.components[1].name = "unet";
    report.components[2].name = "vae";
    for (auto& c : report.components) c.source = "random weights";
    build_and_compare(configs, nullptr, report.components);
    return report;
  }

  PartWeights weights;
  if (source.format == ModelFormat::kDiffusers) {
    const fs::path dir(path);
    const fs::path text_file = component_weights(dir / "text_encoder", "model", options.variant);
    const fs::path unet_file = component_weights(dir / "unet", "diffusion_pytorch_model", options.variant);
    const fs::path vae_file = component_weights(dir / "vae", "diffusion_pytorch_model", options.variant);
    weights.text = load_safetensors(text_file);
    weights.unet = load_safetensors(unet_file);
    weights.vae = load_safetensors(vae_file);
    rename_legacy_vae_attention(weights.vae);  // as Pipeline::load does for folders
    report.components.push_back(describe("text_encoder", text_file.string(), weights.text));
    report.components.push_back(describe("unet", unet_file.string(), weights.unet));
    report.components.push_back(describe("vae", vae_file.string(), weights.vae));
  } else {
    describe_file(*source.checkpoint, report);
    SplitCheckpoint split =
        ldm_to_diffusers(source.checkpoint->all(), unet_layout_of(configs.unet), vae_layout_of(configs.vae));
    report.ignored = std::move(split.ignored);
    report.unknown = std::move(split.unknown);
    weights.text = std::move(split.text_encoder);
    weights.unet = std::move(split.unet);
    weights.vae = std::move(split.vae);
    report.components.push_back(describe("text_encoder", "cond_stage_model.*", weights.text));
    report.components.push_back(describe("unet", "model.diffusion_model.*", weights.unet));
    report.components.push_back(describe("vae", "first_stage_model.*", weights.vae));
  }
  if (options.compare_keys) build_and_compare(configs, &weights, report.components);
  return report;
}

}  // namespace sd
