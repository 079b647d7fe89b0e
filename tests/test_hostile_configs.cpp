// Hostile and mistaken config.json files: every field's type and range is checked before anything is
// built, and a config that does not describe its weights is one error naming the field, the value it
// gives and the value the weights have (issue 18). Each case here built modules until memory ran out,
// printed a LibTorch backtrace, or failed with a list of mismatched tensors before the checks.
#include <torch/torch.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <filesystem>
#include <fstream>

#include "cli_run.h"
#include "core/json_config.h"
#include "golden.h"
#include "models/config_limits.h"
#include "models/configs.h"
#include "models/unet.h"
#include "sd/error.h"
#include "sd/pipeline.h"
#include "sd/scheduler.h"

namespace {
namespace fs = std::filesystem;

fs::path tiny_pipeline() { return golden::dir() / "pipelines/sd1_tiny"; }

nlohmann::json sd15_config(const char* part) {
  return sd::read_json_file(fs::path(LIBSD_SOURCE_DIR) / "weights/sd-v1-5" / part / "config.json");
}

// The error a config with `field` = `value` gets, or "no error".
template <class Config>
std::string refusal(const char* part, const std::string& field, const nlohmann::json& value) {
  auto json = sd15_config(part);
  json[field] = value;
  try {
    Config::from_json(sd::JsonConfig(json, std::string(part) + "/config.json"));
    return "no error";
  } catch (const sd::Error& e) {
    return e.what();
  }
}

bool one_line(const std::string& message) { return message.find('\n') == std::string::npos; }

// A copy of the tiny diffusers pipeline whose `part`/config.json has `edit` applied; the weights and
// the other files are links to the originals.
fs::path edited_pipeline(const std::string& name, const std::string& part,
                         const std::function<void(nlohmann::json&)>& edit) {
  const fs::path dir = cli::temp_dir() / ("hostile-" + name);
  fs::remove_all(dir);
  for (const auto& entry : fs::recursive_directory_iterator(tiny_pipeline())) {
    const fs::path target = dir / fs::relative(entry.path(), tiny_pipeline());
    if (entry.is_directory()) {
      fs::create_directories(target);
    } else {
      fs::create_directories(target.parent_path());
      fs::create_symlink(entry.path(), target);
    }
  }
  const fs::path config = dir / part / "config.json";
  auto json = sd::read_json_file(config);
  edit(json);
  fs::remove(config);
  std::ofstream(config) << json.dump(2);
  return dir;
}

std::string load_error(const fs::path& model) {
  try {
    sd::Pipeline::load(model.string());
    return "no error";
  } catch (const sd::Error& e) {
    return e.what();
  }
}

}  // namespace

TEST_CASE("the issue's UNet configs are refused by range before anything is built", "[unit][config][hostile]") {
  const std::string layers = refusal<sd::UNetConfig>("unet", "layers_per_block", 2000000);
  CHECK_THAT(layers, Catch::Contains("'layers_per_block' = 2000000") && Catch::Contains("out of range [1, 16]"));
  CHECK(one_line(layers));
  const std::string channels = refusal<sd::UNetConfig>("unet", "block_out_channels", {320, 1099511627776LL, 1280, 1280});
  CHECK_THAT(channels, Catch::Contains("'block_out_channels[1]' = 1099511627776") && Catch::Contains("8192"));
  CHECK(one_line(channels));
}

TEST_CASE("config fields of the wrong type are refused, not converted", "[unit][config][hostile]") {
  // nlohmann::json would truncate 2.5 to 2 and wrap 2^64 - 1 to -1.
  CHECK_THAT(refusal<sd::UNetConfig>("unet", "layers_per_block", 2.5),
             Catch::Contains("'layers_per_block' has the wrong type: expected an integer"));
  CHECK_THAT(refusal<sd::UNetConfig>("unet", "layers_per_block", 18446744073709551615ULL),
             Catch::Contains("'layers_per_block' has the wrong type"));
  CHECK_THAT(refusal<sd::UNetConfig>("unet", "layers_per_block", "2"), Catch::Contains("expected an integer"));
  CHECK_THAT(refusal<sd::UNetConfig>("unet", "block_out_channels", {320, "640", 1280, 1280}),
             Catch::Contains("'block_out_channels' has the wrong type"));
  CHECK_THAT(refusal<sd::UNetConfig>("unet", "block_out_channels", 320), Catch::Contains("expected a list"));
  CHECK_THAT(refusal<sd::UNetConfig>("unet", "use_linear_projection", 1), Catch::Contains("expected true or false"));
  CHECK_THAT(refusal<sd::UNetConfig>("unet", "norm_eps", "1e-5"), Catch::Contains("expected a number"));
  CHECK_THAT(refusal<sd::UNetConfig>("unet", "attention_head_dim", 8.5), Catch::Contains("attention_head_dim"));
  CHECK_THAT(refusal<sd::VAEConfig>("vae", "scaling_factor", nullptr), Catch::Contains("no error"));  // null: default
  // A config file that holds no object (every field would silently default).
  const fs::path list = cli::temp_dir() / "list-config.json";
  std::ofstream(list) << "[1, 2, 3]";
  CHECK_THROWS_WITH(sd::UNetConfig::from_file(list), Catch::Contains("expected a JSON object"));
}

TEST_CASE("every UNet, VAE and text encoder field has a range", "[unit][config][hostile]") {
  using sd::CLIPTextConfig;
  using sd::UNetConfig;
  using sd::VAEConfig;
  struct Case {
    std::string got, expected;
  };
  const std::vector<Case> cases{
      // norm_num_groups 0 reached a modulo (SIGFPE) before; now it is a range error.
      {refusal<UNetConfig>("unet", "norm_num_groups", 0), "'norm_num_groups' = 0 is out of range"},
      {refusal<UNetConfig>("unet", "in_channels", -4), "'in_channels' = -4"},
      {refusal<UNetConfig>("unet", "out_channels", 100000), "'out_channels' = 100000"},
      {refusal<UNetConfig>("unet", "block_out_channels", nlohmann::json::array()), "'block_out_channels' has 0 entries"},
      {refusal<UNetConfig>("unet", "block_out_channels", std::vector<int>(9, 320)), "has 9 entries, expected 1 to 8"},
      {refusal<UNetConfig>("unet", "block_out_channels", {320, 640, -1280, 1280}), "'block_out_channels[2]' = -1280"},
      {refusal<UNetConfig>("unet", "layers_per_block", 0), "'layers_per_block' = 0"},
      {refusal<UNetConfig>("unet", "attention_head_dim", 100000), "'attention_head_dim[0]' = 100000"},
      {refusal<UNetConfig>("unet", "attention_head_dim", 0), "'attention_head_dim[0]' = 0"},
      {refusal<UNetConfig>("unet", "transformer_layers_per_block", 1000), "'transformer_layers_per_block[0]' = 1000"},
      {refusal<UNetConfig>("unet", "cross_attention_dim", 0), "'cross_attention_dim' = 0"},
      {refusal<UNetConfig>("unet", "norm_eps", -1.0), "'norm_eps' = -1"},
      {refusal<UNetConfig>("unet", "norm_eps", 0.0), "'norm_eps' = 0"},
      {refusal<UNetConfig>("unet", "downsample_padding", 100), "'downsample_padding' = 100"},
      {refusal<UNetConfig>("unet", "sample_size", 0), "'sample_size' = 0"},
      {refusal<UNetConfig>("unet", "sample_size", 100000000), "'sample_size' = 100000000"},
      {refusal<VAEConfig>("vae", "layers_per_block", 2000000), "'layers_per_block' = 2000000"},
      {refusal<VAEConfig>("vae", "block_out_channels", {128, 1099511627776LL}), "'block_out_channels[1]' = 1099511627776"},
      {refusal<VAEConfig>("vae", "block_out_channels", std::vector<int>(64, 128)), "has 64 entries, expected 1 to 8"},
      {refusal<VAEConfig>("vae", "norm_num_groups", 0), "'norm_num_groups' = 0"},
      {refusal<VAEConfig>("vae", "latent_channels", 0), "'latent_channels' = 0"},
      {refusal<VAEConfig>("vae", "in_channels", 1000), "'in_channels' = 1000"},
      {refusal<VAEConfig>("vae", "scaling_factor", -0.18215), "'scaling_factor' = -0.18215"},
      {refusal<VAEConfig>("vae", "sample_size", -512), "'sample_size' = -512"},
      {refusal<CLIPTextConfig>("text_encoder", "num_hidden_layers", 2000000), "'num_hidden_layers' = 2000000"},
      {refusal<CLIPTextConfig>("text_encoder", "hidden_size", 1099511627776LL), "'hidden_size' = 1099511627776"},
      {refusal<CLIPTextConfig>("text_encoder", "vocab_size", 0), "'vocab_size' = 0"},
      {refusal<CLIPTextConfig>("text_encoder", "intermediate_size", -1), "'intermediate_size' = -1"},
      {refusal<CLIPTextConfig>("text_encoder", "num_attention_heads", 0), "'num_attention_heads' = 0"},
      {refusal<CLIPTextConfig>("text_encoder", "max_position_embeddings", 10), "'max_position_embeddings' = 10"},
      {refusal<CLIPTextConfig>("text_encoder", "eos_token_id", 49408), "'eos_token_id' = 49408"},
      {refusal<CLIPTextConfig>("text_encoder", "layer_norm_eps", 0.0), "'layer_norm_eps' = 0"},
  };
  for (const auto& c : cases) {
    INFO(c.got);
    CHECK_THAT(c.got, Catch::Contains(c.expected));
    CHECK(one_line(c.got));
  }
  // The unmodified configs pass (nothing above is refused for being merely unusual).
  CHECK(refusal<UNetConfig>("unet", "sample_size", 64) == "no error");
  CHECK(refusal<VAEConfig>("vae", "sample_size", 512) == "no error");
  CHECK(refusal<CLIPTextConfig>("text_encoder", "hidden_size", 768) == "no error");
}

TEST_CASE("a UNet config whose fields are each in range but multiply into an absurd model is refused",
          "[unit][config][hostile]") {
  auto json = sd15_config("unet");
  json["block_out_channels"] = std::vector<int64_t>(4, sd::limits::kMaxChannels);
  json["layers_per_block"] = sd::limits::kMaxLayersPerBlock;
  const auto start = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH(sd::UNetConfig::from_json(sd::JsonConfig(json, "unet/config.json")),
                    Catch::Contains("G parameters, more than the bound"));
  CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < 1.0);
}

TEST_CASE("the UNet parameter estimate is within 10% of the built model", "[unit][config]") {
  // SD 1.5's UNet has 859,520,964 parameters (diffusers' count); the tiny golden UNet is built here.
  const auto sd15 = sd::UNetConfig::from_json(sd::JsonConfig(sd15_config("unet"), "unet/config.json"));
  CHECK(sd::estimate_unet_parameters(sd15) == Approx(859520964.0).epsilon(0.10));
  const auto tiny = sd::UNetConfig::from_file(tiny_pipeline() / "unet/config.json");
  sd::UNet2DConditionModel unet(tiny);
  int64_t count = 0;
  for (const auto& p : unet->parameters()) count += p.numel();
  CHECK(sd::estimate_unet_parameters(tiny) == Approx(static_cast<double>(count)).epsilon(0.10));
}

TEST_CASE("scheduler configs have ranges too", "[unit][config][hostile]") {
  auto refused = [](const std::string& field, const std::string& value) {
    const std::string text = R"({"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012, ")" + field +
                             "\": " + value + "}";
    try {
      sd::SchedulerConfig::from_json_text(text, "scheduler_config.json");
      return std::string("no error");
    } catch (const sd::Error& e) {
      return std::string(e.what());
    }
  };
  CHECK_THAT(refused("num_train_timesteps", "1000000000"), Catch::Contains("num_train_timesteps"));
  CHECK_THAT(refused("num_train_timesteps", "1"), Catch::Contains("num_train_timesteps"));
  CHECK_THAT(refused("beta_end", "NaN"), Catch::Contains("beta_end"));
  CHECK_THAT(refused("beta_start", "-1"), Catch::Contains("beta_start"));
  CHECK_THAT(refused("beta_end", "1.5"), Catch::Contains("beta_end"));
  CHECK_THAT(refused("steps_offset", "-3"), Catch::Contains("steps_offset"));
  CHECK_THAT(refused("steps_offset", "5000"), Catch::Contains("steps_offset"));
  CHECK_THAT(refused("clip_sample_range", "0"), Catch::Contains("clip_sample_range"));
  CHECK_THAT(refused("num_train_timesteps", "2.5"), Catch::Contains("expected an integer"));
  CHECK(refused("steps_offset", "1") == "no error");
}

TEST_CASE("a config that does not match its weights is one error naming the field, before any module is built",
          "[unit][config][hostile]") {
  struct Case {
    std::string name, part;
    std::function<void(nlohmann::json&)> edit;
    std::string expected;
  };
  const std::vector<Case> cases{
      {"unet-channels", "unet", [](auto& j) { j["block_out_channels"] = {32, 128}; },
       "field 'block_out_channels[1]' = 128 does not match the weights"},
      {"unet-first-channels", "unet", [](auto& j) { j["block_out_channels"] = {64, 64}; },
       "field 'block_out_channels[0]' = 64 does not match the weights"},
      {"unet-layers", "unet", [](auto& j) { j["layers_per_block"] = 3; },
       "field 'layers_per_block' = 3 does not match the weights"},
      {"unet-levels", "unet",
       [](auto& j) {
         j["block_out_channels"] = {32, 64, 64};
         j["down_block_types"] = {"CrossAttnDownBlock2D", "DownBlock2D", "DownBlock2D"};
         j["up_block_types"] = {"UpBlock2D", "UpBlock2D", "CrossAttnUpBlock2D"};
       },
       "field 'block_out_channels' = 3 does not match the weights"},
      {"unet-attention", "unet", [](auto& j) { j["down_block_types"] = {"DownBlock2D", "DownBlock2D"}; },
       "field 'down_block_types[0]' = DownBlock2D does not match the weights"},
      {"unet-transformers", "unet", [](auto& j) { j["transformer_layers_per_block"] = 2; },
       "field 'transformer_layers_per_block[0]' = 2 does not match the weights"},
      {"unet-linear", "unet", [](auto& j) { j["use_linear_projection"] = true; },
       "field 'use_linear_projection' = true does not match the weights"},
      {"vae-channels", "vae", [](auto& j) { j["block_out_channels"] = {32, 128}; },
       "field 'block_out_channels[1]' = 128 does not match the weights"},
      {"vae-layers", "vae", [](auto& j) { j["layers_per_block"] = 1; },
       "field 'layers_per_block' = 1 does not match the weights"},
      {"text-layers", "text_encoder", [](auto& j) { j["num_hidden_layers"] = 5; },
       "field 'num_hidden_layers' = 5 does not match the weights"},
      {"text-intermediate", "text_encoder", [](auto& j) { j["intermediate_size"] = 128; },
       "field 'intermediate_size' = 128 does not match the weights"},
      {"text-vocab", "text_encoder", [](auto& j) { j["vocab_size"] = 50000; },
       "field 'vocab_size' = 50000 does not match the weights"},
      // The issue's configs in a real folder: the range check comes first.
      {"unet-runaway", "unet", [](auto& j) { j["layers_per_block"] = 2000000; }, "'layers_per_block' = 2000000"},
      {"unet-huge-channels", "unet", [](auto& j) { j["block_out_channels"] = {32, 1099511627776LL}; },
       "'block_out_channels[1]' = 1099511627776"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    const fs::path model = edited_pipeline(c.name, c.part, c.edit);
    const std::string error = load_error(model);
    CHECK_THAT(error, Catch::Contains(c.expected));
    CHECK_THAT(error, Catch::Contains(c.part + "/config.json"));
    CHECK(one_line(error));
    // The binder's multi-line list of tensors would mean the module was built first.
    CHECK_THAT(error, !Catch::Contains("weights do not match the model"));
  }
  // The unedited copy loads (the checks refuse nothing a matching config has).
  CHECK(load_error(edited_pipeline("unedited", "unet", [](auto&) {})) == "no error");
}

TEST_CASE("sd generate refuses the issue's configs in one line", "[unit][cli][hostile]") {
  const fs::path runaway = edited_pipeline("cli-runaway", "unet", [](auto& j) { j["layers_per_block"] = 2000000; });
  const fs::path huge = edited_pipeline("cli-huge", "unet", [](auto& j) { j["block_out_channels"] = {32, 1099511627776LL}; });
  for (const auto& [model, expected] : {std::pair{runaway, "'layers_per_block' = 2000000"},
                                        std::pair{huge, "'block_out_channels[1]' = 1099511627776"}}) {
    const auto start = std::chrono::steady_clock::now();
    auto r = cli::run_sd("generate --model '" + model.string() + "' --prompt x --steps 1 -q -o '" +
                         (cli::temp_dir() / "hostile.png").string() + "'");
    CHECK(r.code == 1);
    CHECK_THAT(r.err, Catch::Contains(expected));
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK_THAT(r.err, !Catch::Contains("Exception raised from"));
    CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < 30.0);
    CHECK_FALSE(fs::exists(cli::temp_dir() / "hostile.png"));
  }
}
