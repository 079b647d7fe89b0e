// sd inspect: what is in a model folder or checkpoint, and (--keys) how it differs from what the
// model built from the configs expects. The first stop when a load fails. sd::inspect_model does
// the work; this prints its report.
#include <c10/util/ArrayRef.h>
#include <c10/util/StringUtil.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>

#include "commands.h"
#include "sd/inspect.h"
#include "sd/lora.h"
#include "sd/safetensors.h"

namespace sd_cli {
namespace {

std::string shape_text(const std::vector<int64_t>& shape) { return c10::str(c10::IntArrayRef(shape)); }

void print_summary(const sd::ComponentReport& c) {
  std::printf("  %-13s %6zu tensors  %8.1fM parameters  ", c.name.c_str(), c.tensors.size(),
              c.parameters / 1e6);
  for (const auto& [dtype, count] : c.dtypes) std::printf("%s:%zu ", dtype.c_str(), count);
  std::printf(" (%s)\n", c.source.c_str());
}

void print_tensor(const sd::TensorSummary& t) {
  std::printf("    %s %s %s\n", t.name.c_str(), shape_text(t.shape).c_str(),
              sd::safetensors_dtype_name(t.dtype).c_str());
}

// What the module expects but the file lacks, and the reverse.
void print_keys(const sd::ComponentReport& c) {
  const sd::KeyComparison& k = *c.keys;
  const char* name = c.name.c_str();
  for (const auto& t : k.missing)
    std::printf("  %s: missing    %s %s\n", name, t.name.c_str(), shape_text(t.shape).c_str());
  for (const auto& m : k.mismatched) {
    std::printf("  %s: shape      %s file %s, model %s\n", name, m.name.c_str(),
                shape_text(m.file_shape).c_str(), shape_text(m.model_shape).c_str());
  }
  for (const auto& t : k.unexpected)
    std::printf("  %s: unexpected %s %s\n", name, t.name.c_str(), shape_text(t.shape).c_str());
  std::printf("  %s: %zu keys expected, %zu differences\n", name, k.expected, k.differences());
}

// A LoRA file: its format and what it changes (every module with --keys or --tensors).
void print_lora(const std::string& path, bool all_modules) {
  const sd::LoraFileInfo info = sd::inspect_lora(path);
  std::printf("  LoRA (%s%s%s): UNet %zu modules, text encoder %zu modules; %zu linear, %zu convolution; rank %lld",
              info.format.c_str(), info.unet_naming.empty() ? "" : ", UNet names ", info.unet_naming.c_str(),
              info.unet_modules, info.text_encoder_modules, info.linear_modules, info.conv_modules,
              static_cast<long long>(info.min_rank));
  if (info.max_rank != info.min_rank) std::printf("-%lld", static_cast<long long>(info.max_rank));
  if (info.modules_with_alpha == 0) {
    std::printf(", no alpha (alpha = rank)\n");
  } else if (info.min_alpha == info.max_alpha) {
    std::printf(", alpha %g (%zu modules)\n", info.min_alpha, info.modules_with_alpha);
  } else {
    std::printf(", alpha %g-%g (%zu modules)\n", info.min_alpha, info.max_alpha, info.modules_with_alpha);
  }
  const size_t shown = all_modules ? info.modules.size() : std::min<size_t>(info.modules.size(), 5);
  for (size_t i = 0; i < shown; ++i) std::printf("    %s\n", info.modules[i].c_str());
  if (shown < info.modules.size()) std::printf("    ... and %zu more (--keys lists them)\n", info.modules.size() - shown);
}

}  // namespace

Run add_inspect(CLI::App& app) {
  struct Args {
    std::string path, config_dir, variant;
    bool keys = false, tensors = false;
  };
  auto a = std::make_shared<Args>();
  app.add_option("path", a->path, "diffusers folder, .safetensors file, or random:sd-v1-5")->required();
  app.add_flag("--keys", a->keys, "compare the tensor names and shapes with what the model expects");
  app.add_flag("--tensors", a->tensors, "list every tensor");
  app.add_option("--config-dir", a->config_dir,
                 "configs for a single-file checkpoint (default: bundled SD 1.5)");
  app.add_option("--variant", a->variant,
                 "weights variant of a diffusers folder, e.g. fp16 (*.fp16.safetensors)");
  return [a] {
    sd::InspectOptions options;
    options.config_dir = a->config_dir;
    options.variant = a->variant;
    options.compare_keys = a->keys;
    const sd::InspectReport r = sd::inspect_model(a->path, options);
    const char* path = r.path.c_str();

    if (r.format == "random") {
      std::printf("%s: random weights with the configs of %s\n", path, r.config_dir.string().c_str());
      for (const auto& c : r.components) {
        std::printf("  %-13s %8.1fM parameters\n", c.name.c_str(), c.model_parameters / 1e6);
      }
      return 0;
    }
    if (r.format == "diffusers") {
      std::printf("%s: diffusers folder\n", path);
      for (const auto& c : r.components) print_summary(c);
      if (a->tensors) {
        for (const auto& c : r.components) {
          for (const auto& t : c.tensors) print_tensor(t);
        }
      }
    } else {
      const bool single_file = r.format == "single-file";
      std::printf("%s: %s, %zu tensors, %.1fM parameters, %.2f GB\n", path,
                  single_file ? "single-file checkpoint (CompVis/LDM names)" : "safetensors file",
                  r.file_tensors.size(), r.file_parameters / 1e6, r.file_size / 1e9);
      for (const auto& [k, v] : r.metadata) std::printf("  metadata %s = %s\n", k.c_str(), v.c_str());
      if (a->tensors) {
        for (const auto& t : r.file_tensors) print_tensor(t);
      }
      if (!single_file) {
        if (sd::is_lora_file(a->path)) print_lora(a->path, a->keys || a->tensors);
        return 0;
      }
      for (const auto& c : r.components) print_summary(c);
      std::printf("  ignored (non-weights): %zu, unknown: %zu\n", r.ignored.size(), r.unknown.size());
      for (const auto& k : r.unknown) std::printf("    unknown: %s\n", k.c_str());
    }
    if (!a->keys) return 0;
    for (const auto& c : r.components) print_keys(c);
    return r.differences() == 0 ? 0 : 1;
  };
}

}  // namespace sd_cli
