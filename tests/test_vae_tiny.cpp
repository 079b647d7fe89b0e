// The tiny autoencoder (TAESD, diffusers AutoencoderTiny) against data diffusers 0.27.2 recorded
// (tests/data/vae, written by tests/reference/make_vae_cases.py): a small-channel TAESD with
// diffusers' default block counts, as a diffusers folder and in the original two-file layout; and
// the errors that bad configs and weight files give.
#include <torch/torch.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/json_config.h"
#include "golden.h"
#include "models/vae_tiny.h"
#include "scratch.h"
#include "sd/error.h"
#include "sd/safetensors.h"
#include "vae_ref.h"
#include "weights/bind.h"

namespace {

namespace fs = std::filesystem;

fs::path vae_data() { return vae_ref::dir(); }
fs::path taesd_dir() { return vae_data() / "taesd"; }
fs::path original_dir() { return vae_data() / "taesd_original"; }

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  return nlohmann::json::parse(in);
}

const nlohmann::json& vae_manifest() { return vae_ref::manifest(); }
using vae_ref::case_tensors;

// A fresh folder per test, removed afterwards.
struct TempDir : scratch::Dir {
  explicit TempDir(const std::string& name) : scratch::Dir("vae_tiny", name) {}
};

void write_json(const fs::path& path, const nlohmann::json& j) { std::ofstream(path) << j.dump(2); }

using scratch::error_of;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("TAESD config parses diffusers' fields and defaults", "[unit][vae-tiny]") {
  const auto c = sd::TinyVAEConfig::from_file(taesd_dir() / "config.json");
  CHECK(c.encoder_block_out_channels == std::vector<int64_t>{8, 8, 8, 8});
  CHECK(c.decoder_block_out_channels == std::vector<int64_t>{8, 8, 8, 8});
  CHECK(c.num_encoder_blocks == std::vector<int64_t>{1, 3, 3, 3});
  CHECK(c.num_decoder_blocks == std::vector<int64_t>{3, 3, 3, 1});
  CHECK(c.act_fn == "relu");
  CHECK(c.latent_channels == 4);
  CHECK(c.scaling_factor == 1.0);  // the SD pipeline's latents / scaling_factor leaves them as they are
  CHECK(c.latent_magnitude == 3.0);
  CHECK(c.latent_shift == 0.5);
  CHECK(c.downscale_factor() == 8);
  CHECK(c.upscale_factor() == 8);

  // An empty config takes diffusers' defaults: madebyollin/taesd's 64-channel model.
  const auto d = sd::TinyVAEConfig::from_json(sd::JsonConfig(nlohmann::json::object(), "empty.json"));
  CHECK(d.encoder_block_out_channels == std::vector<int64_t>{64, 64, 64, 64});
  CHECK(d.decoder_block_out_channels == std::vector<int64_t>{64, 64, 64, 64});
  CHECK(d.upsampling_scaling_factor == 2);
}

TEST_CASE("TAESD sizes follow the stage counts and the upsampling factor", "[unit][vae-tiny]") {
  c10::InferenceMode guard;
  sd::TinyVAEConfig c;
  c.encoder_block_out_channels = {4, 4};
  c.num_encoder_blocks = {1, 1};
  c.decoder_block_out_channels = {4, 4, 4};
  c.num_decoder_blocks = {1, 1, 1};
  c.upsampling_scaling_factor = 3;  // nn.Upsample(scale_factor=3): each pixel repeated 3 x 3
  CHECK(c.downscale_factor() == 2);
  CHECK(c.upscale_factor() == 9);
  sd::AutoencoderTiny model(c);
  model->eval();
  auto out = model->decode(torch::zeros({1, 4, 4, 5}));
  CHECK(out.sizes() == torch::IntArrayRef{1, 3, 36, 45});
  auto latents = model->encode(torch::zeros({2, 3, 10, 14}));
  CHECK(latents.sizes() == torch::IntArrayRef{2, 4, 5, 7});
  // The nearest-neighbour upsampling itself: the decoder's layer 3 (conv, act, block, upsample).
  auto& up = *model->decoder;
  REQUIRE(up.kinds.at(3) == sd::TinyLayersImpl::Kind::kUpsample);
  auto x = torch::arange(6, torch::kFloat).view({1, 1, 2, 3});
  auto expected = x.repeat_interleave(3, 2).repeat_interleave(3, 3);
  // run_layers over a decoder made of the upsampling alone
  sd::TinyLayersImpl only_up(sd::TinyActivation::kReLU, 3);
  only_up.add(sd::TinyLayersImpl::Kind::kUpsample, torch::nn::Identity().ptr());
  CHECK(torch::equal(only_up.run_layers(x), expected));
}

TEST_CASE("TAESD module names and shapes are diffusers' state dict", "[unit][vae-tiny]") {
  // Every key and shape of the diffusers-written file, and no other: binding is a name match.
  sd::AutoencoderTiny model(sd::TinyVAEConfig::from_file(taesd_dir() / "config.json"));
  const auto file = sd::load_safetensors(taesd_dir() / "diffusion_pytorch_model.safetensors");
  std::map<std::string, std::vector<int64_t>> expected, actual;
  for (const auto& [k, v] : file) expected[k] = v.sizes().vec();
  for (const auto& [k, shape] : sd::expected_keys(*model)) actual[k] = shape;
  CHECK(actual == expected);
  // The layout of TAESD's layers: the decoder's convs between stages have no bias, its last has.
  CHECK(actual.count("decoder.layers.18.bias") == 1);
  CHECK(actual.count("decoder.layers.6.bias") == 0);
  CHECK(actual.count("encoder.layers.2.bias") == 0);  // stride-2 convs have none
  CHECK(actual.at("encoder.layers.1.conv.4.weight") == std::vector<int64_t>{8, 8, 3, 3});

  // The decoder alone.
  sd::AutoencoderTiny decoder_only(sd::TinyVAEConfig::from_file(taesd_dir() / "config.json"), false);
  for (const auto& [k, shape] : sd::expected_keys(*decoder_only)) CHECK(k.rfind("decoder.", 0) == 0);
}

TEST_CASE("TAESD decode matches diffusers' AutoencoderTiny", "[parity][vae-tiny]") {
  c10::InferenceMode guard;
  auto model = sd::load_autoencoder_tiny_folder(taesd_dir());
  auto decoder_only = sd::load_autoencoder_tiny_folder(taesd_dir(), /*with_encoder=*/false);
  const auto cases = golden::cases_of_kind_in(vae_manifest(), "taesd_decode");
  REQUIRE(cases.size() == 2u);
  for (const auto& c : cases) {
    INFO(c["name"].get<std::string>());
    auto ref = case_tensors(c);
    const auto& z = ref.at("latents");
    auto out = model->decode(z);
    CHECK(out.sizes() == ref.at("image").sizes());
    CHECK_CLOSE_TO_GOLDEN(out, ref.at("image"), golden::tolerance_of(c));
    CHECK(torch::equal(decoder_only->decode(z), out));
    // The latents reach past the tanh clamp's linear range: without it the image is far off.
    CHECK(z.abs().max().item<double>() > 6.0);
  }
  CHECK_THROWS_AS(decoder_only->encode(torch::zeros({1, 3, 64, 64})), sd::Error);
  CHECK_THROWS_AS(model->decode(torch::zeros({1, 3, 8, 8})), sd::Error);  // 3 latent channels, not 4
}

TEST_CASE("TAESD matches diffusers with channels-last weights and inputs", "[parity][vae-tiny]") {
  // What the pipeline runs on CPU by default (LoadOptions::channels_last).
  c10::InferenceMode guard;
  auto model = sd::load_autoencoder_tiny_folder(taesd_dir());
  for (auto& p : model->parameters()) {
    if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
  }
  const auto& dc = golden::find_case_in(vae_manifest(), "cases/taesd_decode_6x10");
  auto dref = case_tensors(dc);
  auto out = model->decode(dref.at("latents").contiguous(torch::MemoryFormat::ChannelsLast));
  CHECK_CLOSE_TO_GOLDEN(out, dref.at("image"), golden::tolerance_of(dc));
  const auto& ec = golden::find_case_in(vae_manifest(), "cases/taesd_encode_48x80");
  auto eref = case_tensors(ec);
  auto latents = model->encode(eref.at("image").contiguous(torch::MemoryFormat::ChannelsLast));
  CHECK_CLOSE_TO_GOLDEN(latents, eref.at("latents"), golden::tolerance_of(ec));
}

TEST_CASE("TAESD encode matches diffusers' AutoencoderTiny", "[parity][vae-tiny]") {
  c10::InferenceMode guard;
  auto model = sd::load_autoencoder_tiny_folder(taesd_dir());
  const auto cases = golden::cases_of_kind_in(vae_manifest(), "taesd_encode");
  REQUIRE(cases.size() == 2u);
  for (const auto& c : cases) {
    INFO(c["name"].get<std::string>());
    auto ref = case_tensors(c);
    const auto& image = ref.at("image");
    auto latents = model->encode(image);
    CHECK(latents.size(2) * model->config.downscale_factor() == image.size(2));
    CHECK(latents.size(3) * model->config.downscale_factor() == image.size(3));
    CHECK_CLOSE_TO_GOLDEN(latents, ref.at("latents"), golden::tolerance_of(c));
  }
}

TEST_CASE("TAESD original two-file weights load as diffusers' conversion renames them", "[parity][vae-tiny]") {
  c10::InferenceMode guard;
  const auto dec_file = original_dir() / "taesd_decoder.safetensors";
  const auto enc_file = original_dir() / "taesd_encoder.safetensors";
  const auto dec = sd::load_safetensors(dec_file);
  const auto enc = sd::load_safetensors(enc_file);
  // The original layout: the decoder's layer 0 is the Clamp, so its first tensor is layer 1's.
  CHECK(dec.count("1.weight") == 1);
  CHECK(dec.count("0.weight") == 0);
  CHECK(dec.count("3.conv.0.weight") == 1);
  CHECK(enc.count("0.weight") == 1);

  const auto renamed = sd::taesd_original_to_diffusers(enc, dec);
  CHECK(renamed.count("decoder.layers.0.weight") == 1);
  CHECK(renamed.count("decoder.layers.2.conv.0.weight") == 1);
  CHECK(renamed.count("encoder.layers.0.weight") == 1);
  // The renamed tensors are exactly the diffusers folder's.
  const auto folder = sd::load_safetensors(taesd_dir() / "diffusion_pytorch_model.safetensors");
  REQUIRE(renamed.size() == folder.size());
  for (const auto& [k, v] : folder) {
    INFO(k);
    REQUIRE(renamed.count(k) == 1);
    CHECK(torch::equal(renamed.at(k), v));
  }

  // The config is read off the decoder's first convolution (8 channels here, not TAESD's 64).
  const auto inferred = sd::taesd_original_config(dec);
  CHECK(inferred.decoder_block_out_channels == std::vector<int64_t>{8, 8, 8, 8});
  CHECK(inferred.latent_channels == 4);

  auto original = sd::load_autoencoder_tiny_original(dec_file, enc_file);
  auto by_folder = sd::load_autoencoder_tiny(original_dir());  // finds *_decoder + *_encoder
  auto by_file = sd::load_autoencoder_tiny(dec_file, /*with_encoder=*/false);
  CHECK(by_file->encoder.is_empty());
  const auto& dcase = golden::find_case_in(vae_manifest(), "cases/taesd_decode_b2_8x8");
  auto dref = case_tensors(dcase);
  auto out = original->decode(dref.at("latents"));
  CHECK_CLOSE_TO_GOLDEN(out, dref.at("image"), golden::tolerance_of(dcase));
  CHECK(torch::equal(by_folder->decode(dref.at("latents")), out));
  CHECK(torch::equal(by_file->decode(dref.at("latents")), out));
  const auto& ecase = golden::find_case_in(vae_manifest(), "cases/taesd_encode_64x64");
  auto eref = case_tensors(ecase);
  CHECK_CLOSE_TO_GOLDEN(by_folder->encode(eref.at("image")), eref.at("latents"), golden::tolerance_of(ecase));
  // load_autoencoder_tiny on the diffusers folder takes the folder route.
  auto diffusers_route = sd::load_autoencoder_tiny(taesd_dir());
  CHECK(torch::equal(diffusers_route->decode(dref.at("latents")), out));
}

TEST_CASE("TAESD configs out of range are refused naming the file and the field", "[unit][vae-tiny]") {
  TempDir dir("config");
  const auto base = read_json(taesd_dir() / "config.json");
  struct Bad {
    const char* field;
    nlohmann::json value;
    const char* says;
  };
  const std::vector<Bad> bad{
      {"latent_channels", 0, "'latent_channels' = 0"},
      {"num_encoder_blocks", {1, 3, 3}, "'num_encoder_blocks'"},
      {"decoder_block_out_channels", {8, 8, 16, 8}, "'decoder_block_out_channels'"},
      {"act_fn", "tanh", "'act_fn'"},
      {"upsampling_scaling_factor", 0, "'upsampling_scaling_factor' = 0"},
      {"scaling_factor", -1.0, "'scaling_factor'"},
      {"num_decoder_blocks", {3, -1, 3, 1}, "'num_decoder_blocks'[1] = -1"},
      {"encoder_block_out_channels", "wide", "'encoder_block_out_channels' has the wrong type"},
      {"_class_name", "AutoencoderKL", "not an AutoencoderTiny"},
  };
  for (const auto& b : bad) {
    INFO(b.field << " = " << b.value.dump());
    auto j = base;
    j[b.field] = b.value;
    const auto path = dir.path / (std::string(b.field) + ".json");
    write_json(path, j);
    const auto msg = error_of([&] { sd::TinyVAEConfig::from_file(path); });
    INFO(msg);
    CHECK(contains(msg, path.string()));
    CHECK(contains(msg, b.says));
  }
  // Upper-case activation names are accepted, as diffusers lower-cases them.
  auto j = base;
  j["act_fn"] = "ReLU";
  write_json(dir.path / "relu.json", j);
  CHECK_NOTHROW(sd::TinyVAEConfig::from_file(dir.path / "relu.json"));
}

TEST_CASE("TAESD weights that do not fit give one error naming the file and the tensor", "[unit][vae-tiny]") {
  TempDir dir("weights");
  const auto weights = sd::load_safetensors(taesd_dir() / "diffusion_pytorch_model.safetensors");
  const auto config = read_json(taesd_dir() / "config.json");

  SECTION("a missing tensor") {
    auto folder = dir.path / "missing";
    fs::create_directories(folder);
    write_json(folder / "config.json", config);
    sd::StateDict partial = weights;
    partial.erase("decoder.layers.6.weight");
    sd::save_safetensors(folder / "diffusion_pytorch_model.safetensors", partial);
    const auto msg = error_of([&] { sd::load_autoencoder_tiny_folder(folder); });
    INFO(msg);
    CHECK(contains(msg, (folder / "diffusion_pytorch_model.safetensors").string()));
    CHECK(contains(msg, "1 missing keys"));
    CHECK(contains(msg, "decoder.layers.6.weight"));
  }
  SECTION("shapes of another width") {
    auto folder = dir.path / "shapes";
    fs::create_directories(folder);
    auto wide = config;
    wide["decoder_block_out_channels"] = {16, 16, 16, 16};
    write_json(folder / "config.json", wide);
    sd::save_safetensors(folder / "diffusion_pytorch_model.safetensors", weights);
    const auto msg = error_of([&] { sd::load_autoencoder_tiny_folder(folder); });
    INFO(msg);
    CHECK(contains(msg, "shape mismatches"));
    CHECK(contains(msg, "'decoder.layers.0.weight': file has [8, 4, 3, 3], model expects [16, 4, 3, 3]"));
  }
  SECTION("an AutoencoderKL folder") {
    const auto msg = error_of([&] { sd::load_autoencoder_tiny(vae_data() / "vae_kl"); });
    INFO(msg);
    CHECK(contains(msg, "vae_kl"));
    CHECK(contains(msg, "not an AutoencoderTiny"));
  }
  SECTION("no weights in the folder") {
    auto folder = dir.path / "empty";
    fs::create_directories(folder);
    write_json(folder / "config.json", config);
    const auto msg = error_of([&] { sd::load_autoencoder_tiny(folder); });
    INFO(msg);
    CHECK(contains(msg, "diffusion_pytorch_model.safetensors"));
  }
  SECTION("original files: the encoder given as the decoder") {
    const auto enc = original_dir() / "taesd_encoder.safetensors";
    auto copy = dir.path / "swapped_decoder.safetensors";
    fs::copy_file(enc, copy);
    const auto msg = error_of([&] { sd::load_autoencoder_tiny(copy, false); });
    INFO(msg);
    CHECK(contains(msg, copy.string()));
    CHECK(contains(msg, "encoder file"));
  }
  SECTION("original files: a diffusers-named file given as the original decoder") {
    auto copy = dir.path / "renamed_decoder.safetensors";
    fs::copy_file(taesd_dir() / "diffusion_pytorch_model.safetensors", copy);
    const auto msg = error_of([&] { sd::load_autoencoder_tiny_original(copy, {}, sd::TinyVAEConfig{}); });
    INFO(msg);
    CHECK(contains(msg, copy.string()));
    CHECK(contains(msg, "not an original TAESD key"));
  }
  SECTION("original files with the default (64-channel) architecture") {
    const auto dec = original_dir() / "taesd_decoder.safetensors";
    const auto msg = error_of([&] { sd::load_autoencoder_tiny_original(dec, {}, sd::TinyVAEConfig{}); });
    INFO(msg);
    CHECK(contains(msg, dec.string()));
    CHECK(contains(msg, "'decoder.layers.0.weight': file has [8, 4, 3, 3], model expects [64, 4, 3, 3]"));
  }
  SECTION("pickle files") {
    auto pth = dir.path / "taesd_decoder.pth";
    std::ofstream(pth) << "not read";
    const auto msg = error_of([&] { sd::load_autoencoder_tiny_original(pth); });
    INFO(msg);
    CHECK(contains(msg, "pickle"));
  }
  SECTION("a folder with neither layout") {
    const auto msg = error_of([&] { sd::load_autoencoder_tiny(dir.path); });
    INFO(msg);
    CHECK(contains(msg, "config.json"));
    CHECK(contains(msg, "_decoder.safetensors"));
  }
}
