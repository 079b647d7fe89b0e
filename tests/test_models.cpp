// Module parity against diffusers/transformers (golden modules/sd1_tiny/*) and the full-size
// SD 1.5 parameter names and shapes (golden sd15-keys.json).
#include <torch/torch.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "bind_file.h"
#include "clip_checks.h"
#include "golden.h"
#include "models/clip_text.h"
#include "models/unet.h"
#include "models/vae.h"
#include "core/json_config.h"
#include "weights/bind.h"

namespace {

std::filesystem::path tiny() { return golden::dir() / "pipelines/sd1_tiny"; }

template <class Module>
void bind(Module& module, const std::filesystem::path& file, std::vector<std::string> ignore = {}) {
  golden::bind_file(module, file, std::move(ignore));
}

sd::UNet2DConditionModel tiny_unet() {
  sd::UNet2DConditionModel unet(sd::UNetConfig::from_file(tiny() / "unet/config.json"));
  bind(unet, tiny() / "unet/diffusion_pytorch_model.safetensors");
  return unet;
}

sd::AutoencoderKL tiny_vae() {
  sd::AutoencoderKL vae(sd::VAEConfig::from_file(tiny() / "vae/config.json"));
  bind(vae, tiny() / "vae/diffusion_pytorch_model.safetensors");
  return vae;
}

nlohmann::json sd15_keys() {
  std::ifstream in(golden::dir() / "sd15-keys.json");
  return nlohmann::json::parse(in);
}

// Names and shapes a module expects == the diffusers list for that component, both directions.
void check_keys_match(const torch::nn::Module& module, const nlohmann::json& reference, const std::string& what) {
  std::map<std::string, std::vector<int64_t>> expected;
  for (auto it = reference.begin(); it != reference.end(); ++it) {
    if (it.key() == "text_model.embeddings.position_ids") continue;  // a constant buffer, not a weight
    expected[it.key()] = it.value().get<std::vector<int64_t>>();
  }
  std::map<std::string, std::vector<int64_t>> actual;
  for (const auto& [name, shape] : sd::expected_keys(module)) actual[name] = shape;
  std::vector<std::string> missing, extra, wrong;
  for (const auto& [k, s] : expected) {
    auto it = actual.find(k);
    if (it == actual.end()) missing.push_back(k);
    else if (it->second != s) wrong.push_back(k);
  }
  for (const auto& [k, s] : actual) {
    if (!expected.count(k)) extra.push_back(k);
  }
  INFO(what << ": " << missing.size() << " missing (first: " << (missing.empty() ? "" : missing[0]) << "), "
            << extra.size() << " extra (first: " << (extra.empty() ? "" : extra[0]) << "), " << wrong.size()
            << " wrong shapes (first: " << (wrong.empty() ? "" : wrong[0]) << ")");
  CHECK(missing.empty());
  CHECK(extra.empty());
  CHECK(wrong.empty());
  CHECK(actual.size() == expected.size());
}

}  // namespace

TEST_CASE("CLIP text encoder matches transformers on every hidden state", "[parity][clip]") {
  c10::InferenceMode guard;
  const std::string name = "modules/sd1_tiny/clip_text_encoder";
  auto tol = golden::tolerance_of(golden::find_case(name));
  auto ref = golden::load_case(name);
  sd::CLIPTextModel clip(sd::CLIPTextConfig::from_file(tiny() / "text_encoder/config.json"));
  bind(clip, tiny() / "text_encoder/model.safetensors", {"text_model.embeddings.position_ids"});
  golden::check_clip_outputs(clip, ref, tol);
}

TEST_CASE("UNet matches diffusers on every golden case", "[parity][unet]") {
  c10::InferenceMode guard;
  auto unet = tiny_unet();
  for (const auto& c : golden::cases_of_kind("unet")) {
    const std::string name = c["name"];
    INFO(name);
    auto ref = golden::load_case(name);
    auto out = unet->forward(ref.at("sample"), ref.at("timestep"), ref.at("encoder_hidden_states"));
    CHECK_CLOSE_TO_GOLDEN(out, ref.at("out_sample"), golden::tolerance_of(c));
  }
}

TEST_CASE("UNet handles latents whose size is not a multiple of 8", "[unit][unet]") {
  c10::InferenceMode guard;
  auto unet = tiny_unet();
  auto out = unet->forward(torch::randn({1, 4, 9, 13}), torch::tensor(500), torch::randn({1, 77, 32}));
  CHECK(out.sizes() == torch::IntArrayRef({1, 4, 9, 13}));
  CHECK(torch::isfinite(out).all().item<bool>());
  CHECK_THROWS_AS(unet->forward(torch::randn({1, 3, 8, 8}), torch::tensor(1), torch::randn({1, 77, 32})), sd::Error);
  CHECK_THROWS_AS(unet->forward(torch::randn({2, 4, 8, 8}), torch::tensor({1, 2, 3}), torch::randn({2, 77, 32})),
                  sd::Error);
}

TEST_CASE("VAE decode and encode match diffusers", "[parity][vae]") {
  c10::InferenceMode guard;
  auto vae = tiny_vae();
  for (const auto& c : golden::cases_of_kind("vae_decode")) {
    const std::string name = c["name"];
    INFO(name);
    auto ref = golden::load_case(name);
    CHECK_CLOSE_TO_GOLDEN(vae->decode(ref.at("latents_scaled")), ref.at("image"), golden::tolerance_of(c));
  }
  for (const auto& c : golden::cases_of_kind("vae_encode")) {
    const std::string name = c["name"];
    INFO(name);
    auto ref = golden::load_case(name);
    auto tol = golden::tolerance_of(c);
    auto dist = vae->encode(ref.at("image"));
    CHECK_CLOSE_TO_GOLDEN(dist.mean, ref.at("mean"), tol);
    CHECK_CLOSE_TO_GOLDEN(dist.logvar, ref.at("logvar"), tol);
    CHECK_CLOSE_TO_GOLDEN(dist.std, ref.at("std"), tol);
  }
}

TEST_CASE("UNet and VAE in channels-last with pre-packed convolutions still match diffusers", "[parity][unet][vae]") {
  // The CPU configuration Pipeline::load uses by default: channels-last weights and inputs, and
  // oneDNN weight prepacking for the small inputs the tiny model has everywhere.
  c10::InferenceMode guard;
  auto to_channels_last = [](torch::nn::Module& m) {
    for (auto& p : m.parameters()) {
      if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
    }
  };
  auto cl = [](const torch::Tensor& t) { return t.contiguous(torch::MemoryFormat::ChannelsLast); };
  auto packed_count = [](torch::nn::Module& m) {
    int64_t n = 0;
    for (const auto& child : m.modules()) {
      if (auto* conv = dynamic_cast<sd::Conv2dImpl*>(child.get())) n += conv->packed() ? 1 : 0;
    }
    return n;
  };
  auto unet = tiny_unet();
  to_channels_last(*unet);
  CHECK(sd::enable_conv_prepacking(*unet, sd::default_prepack_max_pixels(torch::kFloat)) > 10);
  for (const auto& c : golden::cases_of_kind("unet")) {
    const std::string name = c["name"];
    INFO(name);
    auto ref = golden::load_case(name);
    auto out = unet->forward(cl(ref.at("sample")), ref.at("timestep"), ref.at("encoder_hidden_states"));
    CHECK_CLOSE_TO_GOLDEN(out, ref.at("out_sample"), golden::tolerance_of(c));
  }
  auto vae = tiny_vae();
  to_channels_last(*vae);
  CHECK(sd::enable_conv_prepacking(*vae, sd::default_prepack_max_pixels(torch::kFloat)) > 5);  // (its golden inputs are too large to be packed)
  for (const auto& c : golden::cases_of_kind("vae_decode")) {
    const std::string name = c["name"];
    INFO(name);
    auto ref = golden::load_case(name);
    CHECK_CLOSE_TO_GOLDEN(vae->decode(cl(ref.at("latents_scaled"))), ref.at("image"), golden::tolerance_of(c));
  }
  if (sd::conv_prepacking_available()) {
    CHECK(packed_count(*unet) > 10);  // the golden latents are small: most convolutions got packed
  } else {
    WARN("this LibTorch has no oneDNN prepacked convolutions: only the plain path was checked");
    CHECK(packed_count(*unet) == 0);
  }
}

TEST_CASE("Binding reports missing, unexpected and mis-shaped keys in one error", "[unit][weights]") {
  sd::VAEConfig config = sd::VAEConfig::from_file(tiny() / "vae/config.json");
  sd::AutoencoderKL vae(config);
  auto weights = sd::load_safetensors(tiny() / "vae/diffusion_pytorch_model.safetensors");
  weights.erase("decoder.conv_in.weight");
  weights["decoder.bogus.weight"] = torch::zeros({1});
  weights["decoder.conv_out.bias"] = torch::zeros({7});
  sd::BindOptions options;
  options.origin = "vae.safetensors";
  try {
    sd::load_state_dict(*vae, weights, options);
    FAIL("no error");
  } catch (const sd::Error& e) {
    std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find("vae.safetensors") != std::string::npos);
    CHECK(msg.find("1 missing keys:\n    decoder.conv_in.weight") != std::string::npos);
    CHECK(msg.find("decoder.bogus.weight") != std::string::npos);
    CHECK(msg.find("'decoder.conv_out.bias': file has [7], model expects [3]") != std::string::npos);
  }
}

TEST_CASE("Full-size SD 1.5 modules have exactly the real files' names and shapes", "[unit][sd15]") {
  const auto keys = sd15_keys()["diffusers"];
  const auto weights = std::filesystem::path(LIBSD_SOURCE_DIR) / "weights/sd-v1-5";
  {
    sd::CLIPTextModel clip(sd::CLIPTextConfig::from_file(weights / "text_encoder/config.json"));
    check_keys_match(*clip, keys["text_encoder"], "text_encoder");
  }
  {
    sd::AutoencoderKL vae(sd::VAEConfig::from_file(weights / "vae/config.json"));
    check_keys_match(*vae, keys["vae"], "vae");
  }
  {
    sd::UNet2DConditionModel unet(sd::UNetConfig::from_file(weights / "unet/config.json"));
    check_keys_match(*unet, keys["unet"], "unet");
    // One full-size forward at a small latent size: the whole graph runs with real shapes.
    c10::InferenceMode guard;
    auto out = unet->forward(torch::randn({1, 4, 16, 16}), torch::tensor(981), torch::randn({1, 77, 768}));
    CHECK(out.sizes() == torch::IntArrayRef({1, 4, 16, 16}));
    CHECK(torch::isfinite(out).all().item<bool>());
  }
}

TEST_CASE("UNet configs outside the SD family are refused naming the field", "[unit][config]") {
  auto bad = [](const char* field, nlohmann::json value) {
    auto json = sd::read_json_file(std::filesystem::path(LIBSD_SOURCE_DIR) / "weights/sd-v1-5/unet/config.json");
    json[field] = value;
    try {
      sd::UNetConfig::from_json(sd::JsonConfig(json, "unet/config.json"));
      return std::string("no error");
    } catch (const sd::Error& e) {
      return std::string(e.what());
    }
  };
  CHECK_THAT(bad("addition_embed_type", "text_time"), Catch::Contains("addition_embed_type"));
  CHECK_THAT(bad("down_block_types", {"SimpleDownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D"}),
             Catch::Contains("SimpleDownBlock2D"));
  CHECK_THAT(bad("attention_head_dim", {5, 10}), Catch::Contains("attention_head_dim"));
  CHECK_THAT(bad("dual_cross_attention", true), Catch::Contains("dual_cross_attention"));
}
