// Single-file (LDM) checkpoint -> diffusers names, judged by golden/sd15-keys.json: every tensor name
// and shape of the real SD 1.5 files in both layouts. Tensors are 0-d scalars expanded to the listed
// shapes, so a full-size SD 1.5 key set costs a few bytes per tensor.
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <unistd.h>
#include <vector>

#include "golden.h"
#include "sd/error.h"
#include "sd/safetensors.h"
#include "weights/ldm_to_diffusers.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const json& keys_spec() {
  static const json spec = [] {
    std::ifstream in(golden::dir() / "sd15-keys.json");
    REQUIRE(in.good());
    return json::parse(in);
  }();
  return spec;
}

json read_config(const char* relative) {
  std::ifstream in(golden::dir() / "sd-v1-5" / relative);
  REQUIRE(in.good());
  return json::parse(in);
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

// The layouts as a model loader derives them from SD 1.5's configs.
sd::UNetLayout sd15_unet_layout() {
  const json config = read_config("unet/config.json");
  sd::UNetLayout layout;
  layout.num_blocks = static_cast<int>(config.at("block_out_channels").size());
  layout.layers_per_block = config.at("layers_per_block").get<int>();
  layout.down_has_attention.clear();
  layout.up_has_attention.clear();
  for (const auto& t : config.at("down_block_types")) layout.down_has_attention.push_back(starts_with(t, "CrossAttn"));
  for (const auto& t : config.at("up_block_types")) layout.up_has_attention.push_back(starts_with(t, "CrossAttn"));
  return layout;
}

sd::VAELayout sd15_vae_layout() {
  const json config = read_config("vae/config.json");
  sd::VAELayout layout;
  layout.num_blocks = static_cast<int>(config.at("block_out_channels").size());
  layout.layers_per_block = config.at("layers_per_block").get<int>();
  return layout;
}

// A tensor of `shape` that owns one element: its own storage, so data pointers identify it.
at::Tensor dummy(const std::vector<int64_t>& shape, at::ScalarType dtype = at::kFloat) {
  return torch::zeros({}, torch::dtype(dtype)).expand(shape);
}

sd::StateDict dummies(const json& names_to_shapes) {
  sd::StateDict dict;
  for (auto it = names_to_shapes.begin(); it != names_to_shapes.end(); ++it) {
    dict.emplace(it.key(), dummy(it.value().get<std::vector<int64_t>>()));
  }
  return dict;
}

// Asserts `actual` holds exactly the names of `expected` with the same shapes, listing differences.
void check_matches_spec(const sd::StateDict& actual, const json& expected, const std::string& component) {
  std::vector<std::string> missing, extra, wrong_shape;
  for (auto it = expected.begin(); it != expected.end(); ++it) {
    auto found = actual.find(it.key());
    if (found == actual.end()) {
      missing.push_back(it.key());
    } else if (found->second.sizes().vec() != it.value().get<std::vector<int64_t>>()) {
      wrong_shape.push_back(it.key() + " " + c10::str(found->second.sizes()) + " vs " + it.value().dump());
    }
  }
  for (const auto& [name, tensor] : actual) {
    if (!expected.contains(name)) extra.push_back(name);
  }
  INFO(component << ": " << actual.size() << " tensors produced, " << expected.size() << " expected");
  INFO("missing: " << json(missing).dump());
  INFO("not in the diffusers layout: " << json(extra).dump());
  INFO("wrong shape: " << json(wrong_shape).dump());
  CHECK(missing.empty());
  CHECK(extra.empty());
  CHECK(wrong_shape.empty());
}

std::set<const void*> data_pointers(const sd::StateDict& dict) {
  std::set<const void*> pointers;
  for (const auto& [name, tensor] : dict) pointers.insert(tensor.data_ptr());
  return pointers;
}

// The non-weight tensors real single-file checkpoints carry (sd15-keys.json, real_file_differences).
sd::StateDict non_weight_extras() {
  sd::StateDict extras;
  for (const char* name : {"betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "posterior_variance"}) {
    extras.emplace(name, dummy({1000}));
  }
  extras.emplace("model_ema.decay", dummy({}));
  extras.emplace("model_ema.num_updates", dummy({}, at::kInt));
  extras.emplace("cond_stage_model.transformer.text_model.embeddings.position_ids", dummy({1, 77}, at::kLong));
  return extras;
}

struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<unsigned> counter{0};
    path = fs::temp_directory_path() /
           ("libsd-ldm-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
};

}  // namespace

TEST_CASE("ldm_to_diffusers: SD 1.5 single-file keys become exactly the diffusers keys and shapes", "[unit][weights]") {
  const json& spec = keys_spec();
  const sd::StateDict weights = dummies(spec.at("single_file"));
  sd::StateDict checkpoint = weights;
  const sd::StateDict extras = non_weight_extras();
  checkpoint.insert(extras.begin(), extras.end());

  const sd::SplitCheckpoint split = sd::ldm_to_diffusers(checkpoint, sd15_unet_layout(), sd15_vae_layout());

  INFO("unknown: " << json(split.unknown).dump());
  CHECK(split.unknown.empty());
  std::vector<std::string> expected_ignored;
  for (const auto& [name, tensor] : extras) expected_ignored.push_back(name);
  CHECK(split.ignored == expected_ignored);

  check_matches_spec(split.unet, spec.at("diffusers").at("unet"), "unet");
  check_matches_spec(split.vae, spec.at("diffusers").at("vae"), "vae");
  check_matches_spec(split.text_encoder, spec.at("diffusers").at("text_encoder"), "text_encoder");

  // Every single-file weight consumed once, and renaming copied nothing: the outputs view exactly
  // the inputs' storages.
  CHECK(split.unet.size() + split.vae.size() + split.text_encoder.size() == weights.size());
  std::set<const void*> produced = data_pointers(split.unet);
  for (const auto* part : {&split.vae, &split.text_encoder}) {
    const auto p = data_pointers(*part);
    produced.insert(p.begin(), p.end());
  }
  CHECK(produced == data_pointers(weights));
}

TEST_CASE("ldm_to_diffusers: text encoder keys saved without the text_model level map the same", "[unit][weights]") {
  const json& spec = keys_spec();
  const std::string prefix = "cond_stage_model.transformer.text_model.";
  sd::StateDict checkpoint;
  for (auto it = spec.at("single_file").begin(); it != spec.at("single_file").end(); ++it) {
    if (!starts_with(it.key(), prefix)) continue;
    checkpoint.emplace("cond_stage_model.transformer." + it.key().substr(prefix.size()),
                       dummy(it.value().get<std::vector<int64_t>>()));
  }
  REQUIRE(!checkpoint.empty());
  const sd::SplitCheckpoint split = sd::ldm_to_diffusers(checkpoint, sd15_unet_layout(), sd15_vae_layout());
  CHECK(split.unknown.empty());
  check_matches_spec(split.text_encoder, spec.at("diffusers").at("text_encoder"), "text_encoder");
}

TEST_CASE("ldm_to_diffusers: keys no rule matches are listed, not guessed", "[unit][weights]") {
  const std::vector<std::string> strays = {
      "cond_stage_model.transformer.text_model.pooler.weight",
      "first_stage_model.encoder.mid.attn_1.qkv.weight",           // no such leaf in an AttnBlock
      "model.diffusion_model.input_blocks.1.0.in_layers.1.weight",  // index 1 is the SiLU: no parameters
      "model.diffusion_model.input_blocks.12.0.in_layers.0.weight",  // past the last input block of SD 1.5
      "model.diffusion_model.output_blocks.0.1.conv.weight",         // up block 0 upsamples only after its last resnet
      "something_else.weight",
  };
  sd::StateDict checkpoint;
  for (const auto& name : strays) checkpoint.emplace(name, dummy({4}));
  const sd::SplitCheckpoint split = sd::ldm_to_diffusers(checkpoint, sd15_unet_layout(), sd15_vae_layout());
  std::vector<std::string> expected = strays;
  std::sort(expected.begin(), expected.end());
  CHECK(split.unknown == expected);
  CHECK(split.unet.empty());
  CHECK(split.vae.empty());
  CHECK(split.text_encoder.empty());
}

TEST_CASE("ldm_to_diffusers: refuses bad packed q/k/v, two keys with one name and bad layouts", "[unit][weights]") {
  SECTION("OpenCLIP in_proj that is not [3C, C]") {
    sd::StateDict checkpoint{{"cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight", dummy({3072, 1000})},
                             {"cond_stage_model.model.transformer.resblocks.1.ln_1.weight", dummy({1000})}};
    CHECK_THROWS_WITH(sd::ldm_to_diffusers(checkpoint),
                      Catch::Contains("cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight") &&
                          Catch::Contains("[3C, C]") && Catch::Contains("[3072, 1000]"));
  }
  SECTION("a key with and without the text_model level") {
    sd::StateDict checkpoint{{"cond_stage_model.transformer.final_layer_norm.weight", dummy({768})},
                             {"cond_stage_model.transformer.text_model.final_layer_norm.weight", dummy({768})}};
    CHECK_THROWS_WITH(sd::ldm_to_diffusers(checkpoint), Catch::Contains("text_model.final_layer_norm.weight") &&
                                                            Catch::Contains("both rename"));
  }
  SECTION("layout lists that disagree with num_blocks") {
    sd::UNetLayout unet;
    unet.down_has_attention = {true, true};
    CHECK_THROWS_WITH(sd::ldm_to_diffusers({}, unet), Catch::Contains("down_has_attention"));
  }
}

TEST_CASE("ldm_to_diffusers: an OpenCLIP text encoder (SD 2.x) becomes CLIPTextModel names minus its last layer",
          "[unit][weights]") {
  // A small OpenCLIP text tower: width C, L layers. The expected names are SD 1.5's diffusers text
  // encoder names (sd15-keys.json) for layers 0 .. L-2: SD 2.x conditions on the penultimate layer.
  const int64_t C = 8, L = 3, vocab = 11, context = 77;
  const std::string p = "cond_stage_model.model.";
  sd::StateDict checkpoint{{p + "positional_embedding", dummy({context, C})},
                           {p + "token_embedding.weight", dummy({vocab, C})},
                           {p + "ln_final.weight", dummy({C})},
                           {p + "ln_final.bias", dummy({C})},
                           {p + "text_projection", dummy({C, C})},
                           {p + "logit_scale", dummy({})}};
  // Distinct values, so the q/k/v split can be checked against PyTorch's packing (rows [q; k; v]).
  const at::Tensor in_proj_weight = torch::arange(3 * C * C, torch::kFloat).reshape({3 * C, C});
  const at::Tensor in_proj_bias = torch::arange(3 * C, torch::kFloat);
  for (int64_t i = 0; i < L; ++i) {
    const std::string layer = p + "transformer.resblocks." + std::to_string(i) + ".";
    checkpoint.emplace(layer + "attn.in_proj_weight", in_proj_weight);
    checkpoint.emplace(layer + "attn.in_proj_bias", in_proj_bias);
    for (const char* param : {"weight", "bias"}) {
      const bool w = std::string(param) == "weight";
      checkpoint.emplace(layer + "attn.out_proj." + param, w ? dummy({C, C}) : dummy({C}));
      checkpoint.emplace(layer + "ln_1." + param, dummy({C}));
      checkpoint.emplace(layer + "ln_2." + param, dummy({C}));
      checkpoint.emplace(layer + "mlp.c_fc." + param, w ? dummy({4 * C, C}) : dummy({4 * C}));
      checkpoint.emplace(layer + "mlp.c_proj." + param, w ? dummy({C, 4 * C}) : dummy({C}));
    }
  }
  const sd::SplitCheckpoint split = sd::ldm_to_diffusers(checkpoint);
  INFO("unknown: " << json(split.unknown).dump());
  CHECK(split.unknown.empty());

  std::set<std::string> expected;
  for (auto it = keys_spec().at("diffusers").at("text_encoder").begin();
       it != keys_spec().at("diffusers").at("text_encoder").end(); ++it) {
    const std::string& name = it.key();
    const std::string layers = "text_model.encoder.layers.";
    if (starts_with(name, layers) && std::stoi(name.substr(layers.size())) >= L - 1) continue;
    expected.insert(name);
  }
  std::set<std::string> produced;
  for (const auto& [name, tensor] : split.text_encoder) produced.insert(name);
  CHECK(produced == expected);

  const std::string last = p + "transformer.resblocks." + std::to_string(L - 1) + ".";
  for (const auto& name : split.ignored) {
    INFO(name);
    CHECK((name == p + "text_projection" || name == p + "logit_scale" || starts_with(name, last)));
  }
  CHECK(split.ignored.size() == 2 + 12);  // the last layer's 12 tensors

  const auto& te = split.text_encoder;
  for (const char* layer : {"text_model.encoder.layers.0.", "text_model.encoder.layers.1."}) {
    INFO(layer);
    const std::string l = layer;
    CHECK(torch::equal(te.at(l + "self_attn.q_proj.weight"), in_proj_weight.slice(0, 0, C)));
    CHECK(torch::equal(te.at(l + "self_attn.k_proj.weight"), in_proj_weight.slice(0, C, 2 * C)));
    CHECK(torch::equal(te.at(l + "self_attn.v_proj.weight"), in_proj_weight.slice(0, 2 * C, 3 * C)));
    CHECK(torch::equal(te.at(l + "self_attn.v_proj.bias"), in_proj_bias.slice(0, 2 * C, 3 * C)));
    // Views of the packed tensor, not copies.
    CHECK(te.at(l + "self_attn.k_proj.weight").data_ptr() ==
          static_cast<const void*>(in_proj_weight.data_ptr<float>() + C * C));
  }
  CHECK(te.at("text_model.embeddings.position_embedding.weight").sizes() == c10::IntArrayRef{context, C});
}

TEST_CASE("rename_legacy_vae_attention: legacy names and 1x1-conv shapes become the diffusers VAE keys",
          "[unit][weights]") {
  // sd15-keys.json, real_file_differences: the public SD 1.5 VAE file names its attention weights
  // query/key/value/proj_attn instead of to_q/to_k/to_v/to_out.0.
  const std::vector<std::pair<std::string, std::string>> legacy_of = {
      {".to_q.", ".query."}, {".to_k.", ".key."}, {".to_v.", ".value."}, {".to_out.0.", ".proj_attn."}};
  const json& expected = keys_spec().at("diffusers").at("vae");
  for (const bool conv_shaped : {false, true}) {
    INFO("weights stored as [C,C,1,1]: " << conv_shaped);
    sd::StateDict vae;
    size_t renamed = 0;
    for (auto it = expected.begin(); it != expected.end(); ++it) {
      std::string name = it.key();
      std::vector<int64_t> shape = it.value().get<std::vector<int64_t>>();
      for (const auto& [current, legacy] : legacy_of) {
        const size_t at = name.find(".attentions.0" + current);
        if (at == std::string::npos) continue;
        name.replace(at + 13, current.size(), legacy);
        ++renamed;
        if (conv_shaped && shape.size() == 2) shape.insert(shape.end(), {1, 1});
      }
      vae.emplace(name, dummy(shape));
    }
    REQUIRE(renamed == 16);  // encoder + decoder mid-block attention: 4 projections x weight, bias
    const auto pointers = data_pointers(vae);
    sd::rename_legacy_vae_attention(vae);
    check_matches_spec(vae, expected, "vae");
    CHECK(data_pointers(vae) == pointers);  // views, not copies
  }
}

TEST_CASE("rename_legacy_vae_attention: leaves current names alone and refuses both spellings at once",
          "[unit][weights]") {
  const json& expected = keys_spec().at("diffusers").at("vae");
  sd::StateDict vae = dummies(expected);
  sd::rename_legacy_vae_attention(vae);
  check_matches_spec(vae, expected, "vae");

  vae.emplace("decoder.mid_block.attentions.0.query.weight", dummy({512, 512}));
  CHECK_THROWS_WITH(sd::rename_legacy_vae_attention(vae),
                    Catch::Contains("decoder.mid_block.attentions.0.query.weight") &&
                        Catch::Contains("decoder.mid_block.attentions.0.to_q.weight"));
}

TEST_CASE("ldm_to_diffusers: a single-file .safetensors written and read back maps to views of the file",
          "[unit][weights]") {
  TempDir dir;
  const fs::path path = dir.path / "tiny-single-file.safetensors";
  torch::manual_seed(0);
  const sd::NamedTensors tensors = {
      {"model.diffusion_model.input_blocks.1.0.in_layers.0.weight", torch::randn({4})},
      {"model.diffusion_model.middle_block.1.proj_in.weight", torch::randn({4, 4, 1, 1})},
      {"first_stage_model.decoder.mid.attn_1.q.weight", torch::randn({4, 4, 1, 1})},
      {"first_stage_model.decoder.up.0.block.0.nin_shortcut.weight", torch::randn({2, 4, 1, 1})},
      {"cond_stage_model.transformer.text_model.final_layer_norm.weight", torch::randn({4}).to(torch::kHalf)},
      {"cond_stage_model.transformer.text_model.embeddings.position_ids", torch::arange(77).reshape({1, 77})},
      {"betas", torch::linspace(1e-4, 2e-2, 10)},
  };
  sd::save_safetensors(path, tensors);
  sd::SafetensorsFile file(path);
  const sd::SplitCheckpoint split = sd::ldm_to_diffusers(file.all());
  CHECK(split.unknown.empty());
  CHECK(split.ignored == std::vector<std::string>{"betas", "cond_stage_model.transformer.text_model.embeddings.position_ids"});

  // Where each lands; every target name is one the diffusers layout has (sd15-keys.json).
  const json& diffusers = keys_spec().at("diffusers");
  struct Expect {
    const sd::StateDict* part;
    const char* component;
    const char* ldm;
    const char* name;
  };
  const Expect expectations[] = {
      {&split.unet, "unet", "model.diffusion_model.input_blocks.1.0.in_layers.0.weight", "down_blocks.0.resnets.0.norm1.weight"},
      {&split.unet, "unet", "model.diffusion_model.middle_block.1.proj_in.weight", "mid_block.attentions.0.proj_in.weight"},
      {&split.vae, "vae", "first_stage_model.decoder.mid.attn_1.q.weight", "decoder.mid_block.attentions.0.to_q.weight"},
      {&split.vae, "vae", "first_stage_model.decoder.up.0.block.0.nin_shortcut.weight",
       "decoder.up_blocks.3.resnets.0.conv_shortcut.weight"},
      {&split.text_encoder, "text_encoder", "cond_stage_model.transformer.text_model.final_layer_norm.weight",
       "text_model.final_layer_norm.weight"},
  };
  CHECK(split.unet.size() + split.vae.size() + split.text_encoder.size() == std::size(expectations));
  for (const auto& e : expectations) {
    INFO(e.ldm << " -> " << e.component << " " << e.name);
    CHECK(diffusers.at(e.component).contains(e.name));
    REQUIRE(e.part->count(e.name) == 1);
    const at::Tensor& mapped = e.part->at(e.name);
    const at::Tensor original = file.get(e.ldm);
    CHECK(mapped.data_ptr() == original.data_ptr());  // a view of the mapped file
    CHECK(mapped.scalar_type() == original.scalar_type());
    CHECK(torch::equal(mapped.reshape(original.sizes()), original));
  }
  // The VAE attention 1x1 conv became a linear weight; the UNet's proj_in stays a 1x1 conv (SD 1.x).
  CHECK(split.vae.at("decoder.mid_block.attentions.0.to_q.weight").sizes() == c10::IntArrayRef{4, 4});
  CHECK(split.unet.at("mid_block.attentions.0.proj_in.weight").sizes() == c10::IntArrayRef{4, 4, 1, 1});
}
