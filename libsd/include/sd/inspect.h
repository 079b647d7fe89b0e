#pragma once
// What a model folder or weights file holds, and how it differs from what the model built from its
// configs expects: `sd inspect`, the first stop when a load fails. It finds the files as
// Pipeline::load does (the same variants, the same refusal of pickle files, the same single-file
// renaming and configs) and compares names and shapes as the load's strict binding does.
//
//   sd::InspectOptions options;
//   options.compare_keys = true;
//   auto report = sd::inspect_model("/models/stable-diffusion-v1-5", options);
//   for (const auto& c : report.components) {
//     if (c.keys) std::printf("%s: %zu differences\n", c.name.c_str(), c.keys->differences());
//   }
#include <c10/core/ScalarType.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "sd/export.h"

namespace sd {

struct TensorSummary {
  std::string name;
  c10::ScalarType dtype = c10::ScalarType::Float;
  std::vector<int64_t> shape;
};

struct ShapeMismatch {
  std::string name;
  std::vector<int64_t> file_shape, model_shape;
};

// A component's weights against the module its config builds, as Pipeline::load binds them.
struct KeyComparison {
  size_t expected = 0;                    // tensors the module expects (parameters and buffers)
  std::vector<TensorSummary> missing;     // expected, absent from the weights (the module's shape)
  std::vector<TensorSummary> unexpected;  // in the weights, not expected (known non-weights left out)
  std::vector<ShapeMismatch> mismatched;  // in both, with other shapes; each list sorted by name
  size_t differences() const { return missing.size() + unexpected.size() + mismatched.size(); }
};

struct ComponentReport {
  std::string name;                      // "text_encoder", "unet", "vae"
  std::string source;                    // its file, or in a single file its prefix ("model.diffusion_model.*")
  std::vector<TensorSummary> tensors;    // the weights it gets, by the names the module binds (sorted)
  int64_t parameters = 0;                // elements of those tensors
  std::map<std::string, size_t> dtypes;  // safetensors dtype name ("F16") -> tensor count
  int64_t model_parameters = 0;          // parameters of the module the configs build; 0 when not built
  std::optional<KeyComparison> keys;     // with InspectOptions::compare_keys
};

struct InspectOptions {
  std::filesystem::path config_dir;  // a single file's configs (default: bundled SD 1.5), as LoadOptions
  std::string variant;               // a diffusers folder's *.<variant>.safetensors first, as LoadOptions
  bool compare_keys = false;         // build the models from the configs and compare names and shapes
};

struct SD_API InspectReport {
  std::string path;
  // "random" (configs only), "diffusers", "single-file" (CompVis/LDM names), or "safetensors": a file
  // that is not a whole checkpoint (a component's weights, a LoRA), described but not compared.
  std::string format;
  std::filesystem::path config_dir;  // where the configs came from; empty for "safetensors"
  // A file ("single-file", "safetensors"):
  uint64_t file_size = 0;
  std::map<std::string, std::string> metadata;
  std::vector<TensorSummary> file_tensors;  // every tensor under its name in the file, in file order
  int64_t file_parameters = 0;
  // text_encoder, unet, vae; none for "safetensors". For "random", the parameter counts only.
  std::vector<ComponentReport> components;
  // A single file: known keys that were dropped (non-weights, unused weights), and keys no rule
  // matched (Pipeline::load ignores them with a warning).
  std::vector<std::string> ignored, unknown;
  // The sum of the components' key differences (0 without compare_keys).
  size_t differences() const;
};

// Throws sd::Error for what Pipeline::load would refuse before binding: no such path, a folder
// without model_index.json or a component's weights, a pickle file, unsupported configs.
SD_API InspectReport inspect_model(const std::string& path, const InspectOptions& options = {});

}  // namespace sd
