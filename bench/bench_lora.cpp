// bench_lora: what LoRAs cost on SD 1.5 (docs/lora.md). Writes two random kohya LoRAs of the usual
// shape (every attention projection, proj_in/out and feed-forward of the UNet's 16 transformers,
// every linear layer of the text encoder; rank --rank), then measures in one process:
//   1. the load of the model without and with one LoRA merged (and the merge alone),
//   2. switching between the two LoRAs and back to the base model (Pipeline::set_loras),
//   3. the UNet evaluation time with a LoRA merged and without, alternating, to show that a merged
//      LoRA costs nothing per step.
// Uses only the public API.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "sd/error.h"
#include "sd/lora.h"
#include "sd/pipeline.h"
#include "sd/safetensors.h"

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Layer {
  std::string name;  // kohya name after the prefix
  int64_t out, in;
  bool conv1x1;
};

// SD 1.5's LoRA targets, by diffusers names (kohya underscores them).
std::vector<Layer> sd15_unet_layers() {
  std::vector<Layer> layers;
  auto transformer = [&](const std::string& block, int64_t c) {
    const std::string t = block + "_transformer_blocks_0_";
    layers.push_back({block + "_proj_in", c, c, true});
    layers.push_back({block + "_proj_out", c, c, true});
    for (const char* p : {"to_q", "to_k", "to_v", "to_out_0"}) layers.push_back({t + "attn1_" + p, c, c, false});
    layers.push_back({t + "attn2_to_q", c, c, false});
    layers.push_back({t + "attn2_to_k", c, 768, false});
    layers.push_back({t + "attn2_to_v", c, 768, false});
    layers.push_back({t + "attn2_to_out_0", c, c, false});
    layers.push_back({t + "ff_net_0_proj", 8 * c, c, false});
    layers.push_back({t + "ff_net_2", c, 4 * c, false});
  };
  const int64_t channels[] = {320, 640, 1280, 1280};
  for (int b = 0; b < 3; ++b) {
    for (int i = 0; i < 2; ++i) transformer("down_blocks_" + std::to_string(b) + "_attentions_" + std::to_string(i), channels[b]);
  }
  transformer("mid_block_attentions_0", 1280);
  for (int b = 1; b < 4; ++b) {
    for (int i = 0; i < 3; ++i) transformer("up_blocks_" + std::to_string(b) + "_attentions_" + std::to_string(i), channels[3 - b]);
  }
  return layers;
}

std::vector<Layer> sd15_text_layers() {
  std::vector<Layer> layers;
  for (int i = 0; i < 12; ++i) {
    const std::string l = "text_model_encoder_layers_" + std::to_string(i) + "_";
    for (const char* p : {"q_proj", "k_proj", "v_proj", "out_proj"}) layers.push_back({l + "self_attn_" + p, 768, 768, false});
    layers.push_back({l + "mlp_fc1", 3072, 768, false});
    layers.push_back({l + "mlp_fc2", 768, 3072, false});
  }
  return layers;
}

void write_lora(const std::filesystem::path& path, int64_t rank, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  sd::NamedTensors tensors;
  auto add = [&](const std::string& prefix, const Layer& l) {
    auto opts = torch::TensorOptions().dtype(torch::kFloat);
    auto down = torch::randn({rank, l.in}, gen, opts) / std::sqrt(static_cast<double>(l.in));
    auto up = torch::randn({l.out, rank}, gen, opts) * 0.01;
    if (l.conv1x1) {
      down = down.view({rank, l.in, 1, 1});
      up = up.view({l.out, rank, 1, 1});
    }
    tensors.emplace_back(prefix + l.name + ".lora_down.weight", down.to(torch::kHalf));
    tensors.emplace_back(prefix + l.name + ".lora_up.weight", up.to(torch::kHalf));
    tensors.emplace_back(prefix + l.name + ".alpha", torch::tensor(static_cast<float>(rank) / 2).to(torch::kHalf));
  };
  for (const Layer& l : sd15_unet_layers()) add("lora_unet_", l);
  for (const Layer& l : sd15_text_layers()) add("lora_te_", l);
  sd::save_safetensors(path, tensors, {{"ss_network_dim", std::to_string(rank)}});
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"LoRA load, merge, switch and per-step cost on random:sd-v1-5 (or --model)"};
  std::string model = "random:sd-v1-5", precision = "fp32", device = "cpu", dir = ".";
  int64_t rank = 64;
  int size = 256, repeats = 3, threads = 0;
  app.add_option("--model", model)->capture_default_str();
  app.add_option("--precision", precision)->capture_default_str();
  app.add_option("--device", device)->capture_default_str();
  app.add_option("--rank", rank)->capture_default_str()->check(CLI::Range(1, 320));
  app.add_option("--size", size, "image size of the UNet timing (latents size/8)")->capture_default_str();
  app.add_option("--repeats", repeats, "UNet evaluations per side")->capture_default_str()->check(CLI::Range(1, 1000));
  app.add_option("--threads", threads)->capture_default_str();
  app.add_option("--dir", dir, "where the two LoRA files are written")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // each result as soon as it is measured
  try {
    const auto a = std::filesystem::path(dir) / ("bench_lora_a_r" + std::to_string(rank) + ".safetensors");
    const auto b = std::filesystem::path(dir) / ("bench_lora_b_r" + std::to_string(rank) + ".safetensors");
    auto t = Clock::now();
    write_lora(a, rank, 1);
    write_lora(b, rank, 2);
    std::printf("wrote 2 LoRAs of rank %lld (%zu UNet + %zu text-encoder modules, %.1f MB each) in %.1f s\n",
                static_cast<long long>(rank), sd15_unet_layers().size(), sd15_text_layers().size(),
                std::filesystem::file_size(a) / 1e6, since(t));

    sd::LoadOptions load;
    load.device = device;
    load.precision = sd::precision_from_name(precision);
    load.threads = threads;
    t = Clock::now();
    { auto base = sd::Pipeline::load(model, load); }
    const double load_base = since(t);
    load.loras = {{a, 1.0}};
    t = Clock::now();
    auto pipe = sd::Pipeline::load(model, load);
    const double load_lora = since(t);
    std::printf("load %s %s: %.2f s without LoRA, %.2f s with one (merge %.3f s: %zu UNet + %zu text-encoder layers)\n",
                model.c_str(), precision.c_str(), load_base, load_lora, pipe.lora_report().seconds,
                pipe.lora_report().unet_modules, pipe.lora_report().text_encoder_modules);

    std::vector<double> to_b, to_a, to_base, to_a_from_base;
    for (int i = 0; i < 3; ++i) {
      to_b.push_back(pipe.set_loras({{b, 1.0}}).seconds);
      to_a.push_back(pipe.set_loras({{a, 1.0}}).seconds);
      to_base.push_back(pipe.set_loras({}).seconds);
      to_a_from_base.push_back(pipe.set_loras({{a, 1.0}}).seconds);
    }
    std::printf("switch (median of 3, file read included): A->B %.3f s, B->A %.3f s, A->none %.3f s, none->A %.3f s\n",
                median(to_b), median(to_a), median(to_base), median(to_a_from_base));

    // Per step: the same UNet call with the LoRA merged and without, alternating.
    const auto prompt = pipe.encode_prompt("a photo of an astronaut", "", 1, true);
    at::Generator gen = at::detail::createCPUGenerator(0);
    const auto latents = torch::randn({1, 4, size / 8, size / 8}, gen, torch::TensorOptions().dtype(torch::kFloat));
    const auto timestep = torch::tensor(500);
    pipe.predict_noise(latents, timestep, prompt, 7.5);  // warm-up (prepacking, allocator)
    std::vector<double> merged, plain;
    for (int i = 0; i < repeats; ++i) {
      // After a switch the changed convolutions repack their weights at their first call: not per step.
      pipe.set_loras({{a, 1.0}});
      pipe.predict_noise(latents, timestep, prompt, 7.5);
      t = Clock::now();
      pipe.predict_noise(latents, timestep, prompt, 7.5);
      merged.push_back(since(t));
      pipe.set_loras({});
      pipe.predict_noise(latents, timestep, prompt, 7.5);
      t = Clock::now();
      pipe.predict_noise(latents, timestep, prompt, 7.5);
      plain.push_back(since(t));
    }
    std::printf("UNet evaluation %dx%d, batch 2 (guidance), median of %d: %.3f s with the LoRA merged, %.3f s without\n",
                size, size, repeats, median(merged), median(plain));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_lora: %s\n", e.what());
    return 1;
  }
}
