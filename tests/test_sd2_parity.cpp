// SD 2.x parity: a tiny SD 2.x-style pipeline recorded by diffusers 0.27.2 / transformers 4.40.2
// (tests/data/sd2_tiny, written by tests/reference/make_sd2_tiny.py, which says how to rerun it).
// What SD 2.x has and SD 1.x lacks: a UNet with linear proj_in/proj_out (use_linear_projection),
// per-block head counts (attention_head_dim [2, 4, 8]), upcast_attention, an OpenCLIP-style text
// encoder (hidden_act gelu), a tokenizer that pads with "!" and a v-prediction scheduler.
// Tolerances come from tests/data/sd2_tiny/manifest.json (max(1e-4, 10 x the fp32-vs-fp64 error)).
#include <torch/torch.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "golden.h"
#include "bind_file.h"
#include "clip_checks.h"
#include "golden_e2e.h"
#include "models/clip_text.h"
#include "models/configs.h"
#include "models/unet.h"
#include "sd/pipeline.h"
#include "sd/safetensors.h"
#include "sd/scheduler.h"
#include "sd/tokenizer.h"
#include "weights/bind.h"

namespace {

namespace fs = std::filesystem;

fs::path sd2_dir() { return fs::path(LIBSD_SOURCE_DIR) / "tests/data/sd2_tiny"; }
fs::path sd2_pipeline() { return sd2_dir() / "pipeline"; }

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  return nlohmann::json::parse(in);
}

const nlohmann::json& sd2_manifest() {
  static const nlohmann::json m = read_json(sd2_dir() / "manifest.json");
  return m;
}

const nlohmann::json& sd2_case(const std::string& name) { return golden::find_case_in(sd2_manifest(), name); }

std::vector<nlohmann::json> sd2_cases_of_kind(const std::string& kind) {
  return golden::cases_of_kind_in(sd2_manifest(), kind);
}

sd::StateDict sd2_tensors(const std::string& name) { return sd::load_safetensors(sd2_dir() / (name + ".safetensors")); }
nlohmann::json sd2_case_json(const std::string& name) { return read_json(sd2_dir() / (name + ".json")); }

using golden::bind_file;

sd::UNet2DConditionModel sd2_unet() {
  sd::UNet2DConditionModel unet(sd::UNetConfig::from_file(sd2_pipeline() / "unet/config.json"));
  bind_file(unet, sd2_pipeline() / "unet/diffusion_pytorch_model.safetensors");
  return unet;
}

sd::CLIPTextModel sd2_text_encoder() {
  sd::CLIPTextModel clip(sd::CLIPTextConfig::from_file(sd2_pipeline() / "text_encoder/config.json"));
  bind_file(clip, sd2_pipeline() / "text_encoder/model.safetensors", {"text_model.embeddings.position_ids"});
  return clip;
}

sd::Pipeline& sd2_pipe(bool defaults) {
  static sd::Pipeline contiguous = [] {
    sd::LoadOptions load;
    load.channels_last = false;
    return sd::Pipeline::load(sd2_pipeline().string(), load);
  }();
  // The default load options: channels-last, with fp32 convolution weights pre-packed for oneDNN.
  static sd::Pipeline with_defaults = sd::Pipeline::load(sd2_pipeline().string(), sd::LoadOptions{});
  return defaults ? with_defaults : contiguous;
}

std::vector<int64_t> ids_of(const at::Tensor& row) {
  auto r = row.to(torch::kLong).contiguous();
  return std::vector<int64_t>(r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + r.numel());
}

}  // namespace

TEST_CASE("SD 2.x tiny data has linear projections and per-block heads and upcast attention", "[parity][sd2]") {
  // The raw configs: fail here if the data were regenerated SD 1.x-like.
  const auto raw = read_json(sd2_pipeline() / "unet/config.json");
  REQUIRE(raw.at("attention_head_dim").is_array());  // SD 1.x configs hold one int
  CHECK(raw.at("attention_head_dim").get<std::vector<int64_t>>() == std::vector<int64_t>{2, 4, 8});
  CHECK(raw.at("use_linear_projection").get<bool>());
  CHECK(raw.at("upcast_attention").get<bool>());

  // What libsd makes of them.
  const auto unet = sd::UNetConfig::from_file(sd2_pipeline() / "unet/config.json");
  CHECK(unet.use_linear_projection);
  CHECK(unet.upcast_attention);
  CHECK(unet.num_heads == std::vector<int64_t>{2, 4, 8});
  CHECK(unet.block_out_channels == std::vector<int64_t>{8, 16, 16});
  const auto text = sd::CLIPTextConfig::from_file(sd2_pipeline() / "text_encoder/config.json");
  CHECK(text.hidden_act == "gelu");
  CHECK(unet.cross_attention_dim == text.hidden_size);
  const auto scheduler = sd::SchedulerConfig::from_json_file(sd2_pipeline() / "scheduler/scheduler_config.json");
  CHECK(scheduler.class_name == "DDIMScheduler");
  CHECK(scheduler.prediction_type == "v_prediction");
  CHECK(scheduler.timestep_spacing.empty());  // SD 2.1's config states none: each scheduler's own default
  const auto tokenizer = sd::CLIPTokenizer::from_folder(sd2_pipeline() / "tokenizer");
  CHECK(tokenizer.pad_id() == 0);
  CHECK(tokenizer.id_to_token(tokenizer.pad_id()) == "!");
  CHECK(tokenizer.pad_id() != tokenizer.eos_id());

  // Linear (2-d) proj_in/proj_out weights where SD 1.x has 1x1 convolutions (4-d).
  sd::UNet2DConditionModel model(unet);
  int linear_projections = 0;
  for (const auto& [name, shape] : sd::expected_keys(*model)) {
    const bool proj = name.find(".proj_in.weight") != std::string::npos ||
                      name.find(".proj_out.weight") != std::string::npos;
    if (!proj) continue;
    INFO(name);
    CHECK(shape.size() == 2u);
    ++linear_projections;
  }
  // 7 transformers: down blocks 0 and 1 and the mid block one each, up blocks 1 and 2 two each.
  CHECK(linear_projections == 2 * 7);

  sd::Pipeline& pipe = sd2_pipe(false);
  CHECK(pipe.info().prediction_type == "v_prediction");
  CHECK(pipe.info().vae_scale_factor == 8);
  CHECK(pipe.info().cross_attention_dim == text.hidden_size);
}

TEST_CASE("SD 2.x UNet matches diffusers on the module case", "[parity][sd2]") {
  c10::InferenceMode guard;
  auto unet = sd2_unet();
  const auto cases = sd2_cases_of_kind("unet");
  REQUIRE(!cases.empty());
  for (const auto& c : cases) {
    const std::string name = c["name"];
    INFO(name);
    auto ref = sd2_tensors(name);
    auto out = unet->forward(ref.at("sample"), ref.at("timestep"), ref.at("encoder_hidden_states"));
    CHECK_CLOSE_TO_GOLDEN(out, ref.at("out_sample"), golden::tolerance_of(c));
  }
}

TEST_CASE("SD 2.x UNet matches diffusers on every recorded denoising step", "[parity][sd2]") {
  // The raw UNet outputs of the e2e runs, on diffusers' own inputs: v-predictions at DDIM's integer
  // and Euler's fractional timesteps, conditioned on [negative, prompt] embeddings.
  c10::InferenceMode guard;
  auto unet = sd2_unet();
  const auto cases = sd2_cases_of_kind("e2e");
  REQUIRE(cases.size() == 2u);
  for (const auto& c : cases) {
    const std::string name = c["name"];
    SECTION(name) {
      auto ref = sd2_tensors(name);
      const auto tol = golden::tolerance_of(c, "tolerance_unet_output");
      const auto context = torch::cat({ref.at("negative_prompt_embeds"), ref.at("prompt_embeds")});
      const auto& inputs = ref.at("unet_input_per_step");
      const auto& outputs = ref.at("unet_output_per_step");
      const auto& timesteps = ref.at("timesteps");
      REQUIRE(inputs.size(0) == timesteps.size(0));
      for (int64_t i = 0; i < inputs.size(0); ++i) {
        INFO("step " << i << " t=" << timesteps[i].item<double>());
        CHECK_CLOSE_TO_GOLDEN(unet->forward(inputs[i], timesteps[i], context), outputs[i], tol);
      }
    }
  }
}

TEST_CASE("SD 2.x CLIP text encoder with gelu matches transformers on every hidden state", "[parity][sd2]") {
  c10::InferenceMode guard;
  const std::string name = "modules/clip_text_encoder";
  const auto tol = golden::tolerance_of(sd2_case(name));
  auto ref = sd2_tensors(name);
  auto clip = sd2_text_encoder();
  REQUIRE(clip->config.hidden_act == "gelu");
  golden::check_clip_outputs(clip, ref, tol);
}

TEST_CASE("SD 2.x tokenizer pads with the exclamation mark and matches transformers token for token", "[parity][sd2]") {
  const auto tokenizer = sd::CLIPTokenizer::from_folder(sd2_pipeline() / "tokenizer");
  // The text encoder case: "!" and "<|endoftext|>" written in a prompt are special tokens.
  const std::string text_case = "modules/clip_text_encoder";
  const auto prompts = sd2_case_json(text_case).at("prompts").get<std::vector<std::string>>();
  const auto text_ids = sd2_tensors(text_case).at("input_ids");
  REQUIRE(text_ids.size(0) == static_cast<int64_t>(prompts.size()));
  for (size_t i = 0; i < prompts.size(); ++i) {
    INFO("prompt '" << prompts[i] << "'");
    CHECK(tokenizer.encode(prompts[i]).ids == ids_of(text_ids[static_cast<int64_t>(i)]));
  }
  // The e2e prompts and their negative (or empty) prompts.
  for (const auto& c : sd2_cases_of_kind("e2e")) {
    const std::string name = c["name"];
    INFO(name);
    const auto meta = sd2_case_json(name);
    const auto ref = sd2_tensors(name);
    CHECK(tokenizer.encode(meta["prompt"].get<std::string>()).ids == ids_of(ref.at("input_ids")[0]));
    const std::string negative = meta["negative_prompt"].is_null() ? "" : meta["negative_prompt"].get<std::string>();
    const auto negative_ids = tokenizer.encode(negative).ids;
    CHECK(negative_ids == ids_of(ref.at("negative_input_ids")[0]));
    CHECK(negative_ids.back() == 0);  // padded with "!"
  }
}

TEST_CASE("SD 2.x v-prediction text-to-image matches diffusers step by step", "[parity][e2e][sd2]") {
  const bool defaults = GENERATE(false, true);
  sd::Pipeline& pipe = sd2_pipe(defaults);
  INFO((defaults ? "default load options (channels-last, pre-packed convolutions)" : "contiguous layout"));
  const auto cases = sd2_cases_of_kind("e2e");
  REQUIRE(cases.size() == 2u);
  for (const auto& c : cases) {
    const std::string name = c["name"];
    SECTION(name) {
      const auto meta = sd2_case_json(name);
      auto ref = sd2_tensors(name);
      const auto tol = golden::tolerance_of(c);
      const auto opt = golden::e2e_options(meta, ref);  // the case's generator_seed: libsd draws the noise
      REQUIRE(meta.contains("generator_seed"));
      const std::string prompt = meta["prompt"].get<std::string>();

      // Conditioning: [negative, prompt], as diffusers' prompt_embeds / negative_prompt_embeds.
      const auto encoded = pipe.encode_prompt(prompt, opt.negative_prompt, 1, /*guidance=*/true);
      REQUIRE(encoded.guided);
      const auto& embeddings = encoded.embeddings;
      REQUIRE(embeddings.size(0) == 2);
      CHECK_CLOSE_TO_GOLDEN(embeddings[0].unsqueeze(0), ref.at("negative_prompt_embeds"), tol);
      CHECK_CLOSE_TO_GOLDEN(embeddings[1].unsqueeze(0), ref.at("prompt_embeds"), tol);

      golden::check_e2e_result(pipe.generate(prompt, opt), ref, c);
    }
  }
}
