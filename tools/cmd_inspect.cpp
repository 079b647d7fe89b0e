// sd inspect: what is in a model folder or checkpoint, and (--keys) how it differs from what the
// model built from the configs expects. The first stop when a load fails.
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <torch/torch.h>

#include "commands.h"
#include "core/json_config.h"
#include "pipeline/components.h"
#include "sd/error.h"
#include "sd/safetensors.h"
#include "weights/bind.h"

namespace sd_cli {
namespace {
namespace fs = std::filesystem;

struct Summary {
  size_t tensors = 0;
  int64_t parameters = 0;
  std::map<std::string, size_t> dtypes;  // dtype name -> tensor count
};

Summary summarize(const sd::StateDict& weights) {
  Summary s;
  for (const auto& [name, t] : weights) {
    ++s.tensors;
    s.parameters += t.numel();
    ++s.dtypes[sd::safetensors_dtype_name(t.scalar_type())];
  }
  return s;
}

void print_summary(const std::string& component, const std::string& source, const Summary& s) {
  std::printf("  %-13s %6zu tensors  %8.1fM parameters  ", component.c_str(), s.tensors, s.parameters / 1e6);
  for (const auto& [dtype, count] : s.dtypes) std::printf("%s:%zu ", dtype.c_str(), count);
  std::printf(" (%s)\n", source.c_str());
}

// Prints what the module expects but the file lacks, and the reverse.
int diff_keys(const std::string& component, const torch::nn::Module& module, const sd::StateDict& weights,
              const std::set<std::string>& ignored) {
  std::map<std::string, std::vector<int64_t>> expected;
  for (const auto& [name, shape] : sd::expected_keys(module)) expected[name] = shape;
  int problems = 0;
  for (const auto& [name, shape] : expected) {
    auto it = weights.find(name);
    if (it == weights.end()) {
      std::printf("  %s: missing    %s %s\n", component.c_str(), name.c_str(), c10::str(c10::IntArrayRef(shape)).c_str());
      ++problems;
    } else if (it->second.sizes().vec() != shape) {
      std::printf("  %s: shape      %s file %s, model %s\n", component.c_str(), name.c_str(),
                  c10::str(it->second.sizes()).c_str(), c10::str(c10::IntArrayRef(shape)).c_str());
      ++problems;
    }
  }
  for (const auto& [name, t] : weights) {
    if (!expected.count(name) && !ignored.count(name)) {
      std::printf("  %s: unexpected %s %s\n", component.c_str(), name.c_str(), c10::str(t.sizes()).c_str());
      ++problems;
    }
  }
  std::printf("  %s: %zu keys expected, %d differences\n", component.c_str(), expected.size(), problems);
  return problems;
}

struct Configs {
  sd::CLIPTextConfig text;
  sd::UNetConfig unet;
  sd::VAEConfig vae;
};

Configs configs_of(const fs::path& dir) {
  return {sd::CLIPTextConfig::from_file(dir / "text_encoder/config.json"),
          sd::UNetConfig::from_file(dir / "unet/config.json"), sd::VAEConfig::from_file(dir / "vae/config.json")};
}

int diff_all(const Configs& c, const sd::StateDict& text, const sd::StateDict& unet, const sd::StateDict& vae) {
  int problems = 0;
  problems += diff_keys("text_encoder", *sd::CLIPTextModel(c.text), text, {"text_model.embeddings.position_ids"});
  problems += diff_keys("unet", *sd::UNet2DConditionModel(c.unet), unet, {});
  problems += diff_keys("vae", *sd::AutoencoderKL(c.vae), vae, {});
  return problems;
}

fs::path find_weights(const fs::path& folder, const std::string& stem) {
  for (const auto& name : {stem + ".safetensors", stem + ".fp16.safetensors"}) {
    if (fs::exists(folder / name)) return folder / name;
  }
  SD_FAIL(folder.string(), ": no ", stem, ".safetensors");
}

}  // namespace

Run add_inspect(CLI::App& app) {
  struct Args {
    std::string path, config_dir;
    bool keys = false, tensors = false;
  };
  auto a = std::make_shared<Args>();
  app.add_option("path", a->path, "diffusers folder, .safetensors file, or random:sd-v1-5")->required();
  app.add_flag("--keys", a->keys, "compare the tensor names and shapes with what the model expects");
  app.add_flag("--tensors", a->tensors, "list every tensor");
  app.add_option("--config-dir", a->config_dir, "configs for a single-file checkpoint (default: bundled SD 1.5)");
  return [a] {
    const fs::path path(a->path);
    if (const fs::path dir = sd::random_model_configs(a->path); !dir.empty()) {
      Configs c = configs_of(dir);
      std::printf("%s: random weights with the configs of %s\n", a->path.c_str(), dir.string().c_str());
      auto count = [](const torch::nn::Module& m) {
        int64_t n = 0;
        for (const auto& p : m.parameters()) n += p.numel();
        return n;
      };
      std::printf("  text_encoder  %8.1fM parameters\n", count(*sd::CLIPTextModel(c.text)) / 1e6);
      std::printf("  unet          %8.1fM parameters\n", count(*sd::UNet2DConditionModel(c.unet)) / 1e6);
      std::printf("  vae           %8.1fM parameters\n", count(*sd::AutoencoderKL(c.vae)) / 1e6);
      return 0;
    }
    if (fs::is_directory(path)) {
      SD_CHECK(fs::exists(path / "model_index.json"), path.string(), ": missing model_index.json (not a diffusers folder)");
      std::printf("%s: diffusers folder\n", path.string().c_str());
      const auto text_file = find_weights(path / "text_encoder", "model");
      const auto unet_file = find_weights(path / "unet", "diffusion_pytorch_model");
      const auto vae_file = find_weights(path / "vae", "diffusion_pytorch_model");
      auto text = sd::load_safetensors(text_file);
      auto unet = sd::load_safetensors(unet_file);
      auto vae = sd::load_safetensors(vae_file);
      print_summary("text_encoder", text_file.string(), summarize(text));
      print_summary("unet", unet_file.string(), summarize(unet));
      print_summary("vae", vae_file.string(), summarize(vae));
      if (a->tensors) {
        for (const auto* part : {&text, &unet, &vae}) {
          for (const auto& [name, t] : *part) std::printf("    %s %s %s\n", name.c_str(), c10::str(t.sizes()).c_str(), sd::safetensors_dtype_name(t.scalar_type()).c_str());
        }
      }
      if (a->keys) {
        sd::rename_legacy_vae_attention(vae);
        return diff_all(configs_of(path), text, unet, vae) == 0 ? 0 : 1;
      }
      return 0;
    }
    sd::SafetensorsFile file(path);
    auto all = file.all();
    Summary total = summarize(all);
    const bool single_file = std::any_of(all.begin(), all.end(), [](const auto& kv) {
      return kv.first.rfind("model.diffusion_model.", 0) == 0;
    });
    std::printf("%s: %s, %zu tensors, %.1fM parameters, %.2f GB\n", path.string().c_str(),
                single_file ? "single-file checkpoint (CompVis/LDM names)" : "safetensors file", total.tensors,
                total.parameters / 1e6, file.file_size() / 1e9);
    for (const auto& [k, v] : file.metadata()) std::printf("  metadata %s = %s\n", k.c_str(), v.c_str());
    if (a->tensors) {
      for (const auto& e : file.entries()) {
        std::printf("    %s %s %s\n", e.name.c_str(), c10::str(c10::IntArrayRef(e.shape)).c_str(),
                    sd::safetensors_dtype_name(e.dtype).c_str());
      }
    }
    if (!single_file) return 0;
    const fs::path config_dir = a->config_dir.empty() ? sd::bundled_sd15_dir() : fs::path(a->config_dir);
    Configs c = configs_of(config_dir);
    auto split = sd::ldm_to_diffusers(all, sd::unet_layout_of(c.unet), sd::vae_layout_of(c.vae));
    print_summary("text_encoder", "cond_stage_model.*", summarize(split.text_encoder));
    print_summary("unet", "model.diffusion_model.*", summarize(split.unet));
    print_summary("vae", "first_stage_model.*", summarize(split.vae));
    std::printf("  ignored (non-weights): %zu, unknown: %zu\n", split.ignored.size(), split.unknown.size());
    for (const auto& k : split.unknown) std::printf("    unknown: %s\n", k.c_str());
    if (a->keys) return diff_all(c, split.text_encoder, split.unet, split.vae) == 0 ? 0 : 1;
    return 0;
  };
}

}  // namespace sd_cli
