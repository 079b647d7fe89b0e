// LoRA against diffusers 0.27.2 + peft 0.10 (load_lora_weights + fuse_lora), recorded by
// tests/reference/make_lora_cases.py into tests/data/lora (its docstring says how to rerun it):
// the text encoder's and the UNet's outputs with LoRAs merged at load and switched on a loaded
// pipeline, bit-exact restoring of the base model, and hostile files that must leave a loaded
// pipeline unchanged.
#include <torch/torch.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli_run.h"
#include "golden.h"
#include "sd/error.h"
#include "sd/lora.h"
#include "sd/pipeline.h"
#include "sd/safetensors.h"

namespace {
namespace fs = std::filesystem;

fs::path data_dir() { return fs::path(LIBSD_SOURCE_DIR) / "tests/data/lora"; }
std::string tiny() { return (golden::dir() / "pipelines/sd1_tiny").string(); }

const nlohmann::json& manifest() {
  static const nlohmann::json m = [] {
    std::ifstream in(data_dir() / "manifest.json");
    if (!in) throw std::runtime_error("cannot open " + (data_dir() / "manifest.json").string());
    return nlohmann::json::parse(in);
  }();
  return m;
}

std::vector<sd::LoraSpec> specs_of(const nlohmann::json& c) {
  std::vector<sd::LoraSpec> specs;
  for (const auto& l : c["loras"]) specs.push_back({data_dir() / l["file"].get<std::string>(), l["scale"].get<double>()});
  return specs;
}

// What the reference recorded: the text encoder's output for the prompt, the UNet's for fixed inputs.
struct Outputs {
  at::Tensor text, unet;
};

Outputs outputs_of(sd::Pipeline& pipe) {
  static const sd::StateDict inputs = sd::load_safetensors(data_dir() / "inputs.safetensors");
  Outputs out;
  out.text = pipe.encode_prompt(manifest()["prompt"].get<std::string>(), "", 1, false).embeddings.to(torch::kFloat);
  sd::PromptEmbeddings given;
  given.embeddings = inputs.at("encoder_hidden_states");
  given.batch = 1;
  const auto t = torch::tensor(manifest()["timestep"].get<int64_t>());
  out.unet = pipe.predict_noise(inputs.at("latents"), t, given, 1.0);
  return out;
}

void check_case(const Outputs& got, const nlohmann::json& c) {
  const sd::StateDict ref = sd::load_safetensors(data_dir() / "cases" / (c["name"].get<std::string>() + ".safetensors"));
  const auto text = golden::compare(got.text, ref.at("text_embeddings"), golden::tolerance_of(c["tolerance"], "text_embeddings"));
  const auto unet = golden::compare(got.unet, ref.at("unet_out"), golden::tolerance_of(c["tolerance"], "unet_out"));
  INFO(c["name"].get<std::string>() << ": text " << text.describe() << "; unet " << unet.describe());
  CHECK(text.ok);
  CHECK(unet.ok);
}

bool same(const Outputs& a, const Outputs& b) { return torch::equal(a.text, b.text) && torch::equal(a.unet, b.unet); }

fs::path temp_dir() {
  static const fs::path dir = [] {
    auto d = fs::temp_directory_path() / ("libsd-lora-" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

// A copy of lora_a_kohya with `edit` applied to its tensors.
fs::path edited_lora(const std::string& name, const std::function<void(sd::StateDict&)>& edit,
                     const std::map<std::string, std::string>& metadata = {}) {
  sd::StateDict tensors;
  for (const auto& [k, v] : sd::load_safetensors(data_dir() / "lora_a_kohya.safetensors")) tensors[k] = v.clone();
  edit(tensors);
  const fs::path path = temp_dir() / (name + ".safetensors");
  sd::save_safetensors(path, tensors, metadata);
  return path;
}

const std::string kQ = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q";

}  // namespace

TEST_CASE("LoRA merged at load matches diffusers' fuse_lora", "[lora][parity]") {
  for (const auto& c : manifest()["cases"]) {
    sd::LoadOptions load;
    load.loras = specs_of(c);
    auto pipe = sd::Pipeline::load(tiny(), load);
    check_case(outputs_of(pipe), c);
    if (!load.loras.empty()) {
      // The reference's LoRAs change the outputs far beyond the tolerance: the test would see a no-op.
      const sd::StateDict base = sd::load_safetensors(data_dir() / "cases/base.safetensors");
      const auto moved = golden::compare(outputs_of(pipe).unet, base.at("unet_out"), {1e-3, 1e-3});
      INFO(c["name"].get<std::string>() << ": against the base model " << moved.describe());
      CHECK_FALSE(moved.ok);
      CHECK(pipe.lora_report().unet_modules == 18);
      CHECK(pipe.lora_report().text_encoder_modules == 18);
    }
  }
}

TEST_CASE("LoRA switched on a loaded pipeline matches diffusers and restores the base bit for bit",
          "[lora][parity]") {
  for (const auto precision : {sd::Precision::kFP32, sd::Precision::kBF16}) {
    sd::LoadOptions load;
    load.precision = precision;
    auto pipe = sd::Pipeline::load(tiny(), load);
    const Outputs base = outputs_of(pipe);
    for (const auto& c : manifest()["cases"]) {
      pipe.set_loras(specs_of(c));
      const Outputs got = outputs_of(pipe);
      if (precision == sd::Precision::kFP32) check_case(got, c);
      // Switching from any LoRA to another gives what loading with it gives.
      sd::LoadOptions direct = load;
      direct.loras = specs_of(c);
      auto fresh = sd::Pipeline::load(tiny(), direct);
      INFO(c["name"].get<std::string>() << " in " << sd::precision_name(precision));
      CHECK(same(got, outputs_of(fresh)));
    }
    pipe.set_loras({});
    CHECK(pipe.loras().empty());
    CHECK(same(outputs_of(pipe), base));
    // Scale 0 is the base model.
    pipe.set_loras({{data_dir() / "lora_a_kohya.safetensors", 0.0}, {data_dir() / "lora_b_peft.safetensors", 0.0}});
    CHECK(same(outputs_of(pipe), base));
  }
}

TEST_CASE("LoRA: kohya's LDM-style UNet names merge as the diffusers-style ones", "[lora][unit]") {
  sd::LoadOptions a, ldm;
  a.loras = {{data_dir() / "lora_a_kohya.safetensors", 0.9}};
  ldm.loras = {{data_dir() / "lora_a_kohya_ldm.safetensors", 0.9}};
  auto pa = sd::Pipeline::load(tiny(), a);
  auto pl = sd::Pipeline::load(tiny(), ldm);
  CHECK(pl.lora_report().unet_modules == 18);
  CHECK(same(outputs_of(pa), outputs_of(pl)));
  const sd::LoraFileInfo info = sd::inspect_lora(data_dir() / "lora_a_kohya_ldm.safetensors");
  CHECK(info.format == "kohya");
  CHECK(info.unet_naming == "ldm");
  CHECK(info.unet_modules == 18);
  CHECK(info.text_encoder_modules == 18);
  CHECK(info.conv_modules == 5);  // 3x3: resnet conv1 x2, conv2, downsampler, upsampler
  CHECK(info.min_rank == 4);
  CHECK(info.max_alpha == 2.0);
  CHECK(sd::inspect_lora(data_dir() / "lora_b_peft.safetensors").format == "diffusers-peft");
  CHECK(sd::inspect_lora(data_dir() / "lora_c_old.safetensors").format == "diffusers-old");
  CHECK(sd::is_lora_file(data_dir() / "lora_c_old.safetensors"));
  CHECK_FALSE(sd::is_lora_file(data_dir() / "inputs.safetensors"));
}

TEST_CASE("LoRA: hostile files give one clear error and leave the pipeline unchanged", "[lora][unit]") {
  sd::LoadOptions load;
  load.loras = {{data_dir() / "lora_b_peft.safetensors", 0.5}};
  auto pipe = sd::Pipeline::load(tiny(), load);
  const Outputs before = outputs_of(pipe);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Hostile {
    std::string name;
    fs::path path;
    std::string message;
  };
  const std::vector<Hostile> cases = {
      {"wrong shape", edited_lora("wrong_shape", [](sd::StateDict& t) {
         t[kQ + ".lora_up.weight"] = torch::ones({33, 4});
       }), "do not fit the layer's weight"},
      {"unknown key", edited_lora("unknown_key", [](sd::StateDict& t) {
         t["lora_unet_down_blocks_7_attentions_0_proj_in.lora_down.weight"] = torch::ones({4, 32, 1, 1});
         t["lora_unet_down_blocks_7_attentions_0_proj_in.lora_up.weight"] = torch::ones({32, 4, 1, 1});
       }), "lora_unet_down_blocks_7_attentions_0_proj_in.lora_down.weight: matches no layer of the unet"},
      {"NaN alpha", edited_lora("nan_alpha", [&](sd::StateDict& t) { t[kQ + ".alpha"] = torch::tensor(nan); }),
       "alpha is not finite"},
      {"huge rank", edited_lora("huge_rank", [](sd::StateDict& t) {
         t[kQ + ".lora_down.weight"] = torch::ones({40, 32});
         t[kQ + ".lora_up.weight"] = torch::ones({32, 40});
       }), "rank 40 exceeds"},
      {"rank disagreement", edited_lora("rank_mismatch", [](sd::StateDict& t) {
         t[kQ + ".lora_up.weight"] = torch::ones({32, 3});
       }), "disagree on the rank"},
      {"NaN weights", edited_lora("nan_weights", [&](sd::StateDict& t) { t[kQ + ".lora_up.weight"].view(-1)[0].fill_(nan); }),
       "NaN or infinite"},
      {"missing up", edited_lora("missing_up", [](sd::StateDict& t) { t.erase(kQ + ".lora_up.weight"); }),
       "no matching up weight"},
      {"integer weights", edited_lora("int_weights", [](sd::StateDict& t) {
         t[kQ + ".lora_down.weight"] = torch::ones({4, 32}, torch::kInt);
       }), "expected floating-point"},
      {"SDXL prefix", edited_lora("sdxl", [](sd::StateDict& t) {
         t["lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight"] = torch::ones({4, 32});
       }), "an SDXL LoRA"},
      {"unsupported part", edited_lora("lycoris", [](sd::StateDict& t) { t[kQ + ".hada_w1_a"] = torch::ones({4, 4}); }),
       "unsupported LoRA part 'hada_w1_a'"},
      {"bad metadata alpha", edited_lora("meta_alpha", [](sd::StateDict&) {}, {{"lora_alpha", "nan"}}),
       "metadata 'lora_alpha'"},
      {"pickle", temp_dir() / "lora.ckpt", "pickle files are never loaded"},
      {"missing file", temp_dir() / "absent.safetensors", "does not exist"},
  };
  for (const auto& h : cases) {
    INFO(h.name);
    try {
      pipe.set_loras({{h.path, 1.0}});
      FAIL("no error for " << h.name);
    } catch (const sd::Error& e) {
      const std::string what = e.what();
      INFO(what);
      CHECK(what.find(h.message) != std::string::npos);
      if (h.name != "pickle" && h.name != "missing file") CHECK(what.find(h.path.string()) != std::string::npos);
    }
    CHECK(pipe.loras().size() == 1);
    CHECK(same(outputs_of(pipe), before));
  }
  // A non-finite scale, and a bad file after a good one: still nothing changes.
  CHECK_THROWS_AS(pipe.set_loras({{data_dir() / "lora_a_kohya.safetensors", std::nan("")}}), sd::Error);
  CHECK_THROWS_AS(pipe.set_loras({{data_dir() / "lora_a_kohya.safetensors", 1.0}, {cases[0].path, 1.0}}), sd::Error);
  CHECK(same(outputs_of(pipe), before));
  // At load: the same error, no pipeline.
  sd::LoadOptions bad;
  bad.loras = {{cases[1].path, 1.0}};
  CHECK_THROWS_WITH(sd::Pipeline::load(tiny(), bad), Catch::Contains("matches no layer"));
}

TEST_CASE("LoRA: lenient mode skips and reports what does not fit", "[lora][unit]") {
  const fs::path path = edited_lora("lenient", [](sd::StateDict& t) {
    t["lora_unet_not_a_layer.lora_down.weight"] = torch::ones({4, 32});
    t["lora_unet_not_a_layer.lora_up.weight"] = torch::ones({32, 4});
    t[kQ + ".lora_up.weight"] = torch::ones({33, 4});
  });
  sd::LoadOptions load;
  auto pipe = sd::Pipeline::load(tiny(), load);
  const sd::LoraReport report = pipe.set_loras({{path, 1.0}}, /*lenient=*/true);
  REQUIRE(report.skipped.size() == 2);
  CHECK(report.unet_modules == 17);
  CHECK(report.text_encoder_modules == 18);
  // The other modules are merged as without the broken ones: compare with the file minus those.
  const fs::path clean = edited_lora("lenient_clean", [](sd::StateDict& t) {
    t.erase(kQ + ".lora_up.weight");
    t.erase(kQ + ".lora_down.weight");
    t.erase(kQ + ".alpha");
  });
  sd::LoadOptions direct;
  direct.loras = {{clean, 1.0}};
  auto fresh = sd::Pipeline::load(tiny(), direct);
  CHECK(same(outputs_of(pipe), outputs_of(fresh)));
}

TEST_CASE("LoRA: FILE[:SCALE] specs", "[lora][unit]") {
  CHECK(sd::parse_lora_spec("a.safetensors").scale == 1.0);
  CHECK(sd::parse_lora_spec("a.safetensors:0.5").scale == 0.5);
  CHECK(sd::parse_lora_spec("a.safetensors:0.5").path == "a.safetensors");
  CHECK(sd::parse_lora_spec("a.safetensors:-1e-1").scale == Approx(-0.1));
  CHECK(sd::parse_lora_spec("dir:with:colons/a.safetensors").path == "dir:with:colons/a.safetensors");
  CHECK_THROWS_AS(sd::parse_lora_spec("a.safetensors:inf"), sd::Error);
  CHECK_THROWS_AS(sd::parse_lora_spec(":0.5"), sd::Error);
}

TEST_CASE("sd generate --lora FILE[:SCALE] and sd inspect on a LoRA file", "[lora][unit][cli]") {
  const fs::path out = temp_dir() / "lora.png";
  const std::string a = (data_dir() / "lora_a_kohya.safetensors").string();
  const std::string b = (data_dir() / "lora_b_peft.safetensors").string();
  const std::string base = "generate --model '" + tiny() + "' --prompt 'a lighthouse' --steps 2 --seed 3 -q -o '" +
                           out.string() + "' ";
  const auto r = cli::run_sd(base + "--lora '" + a + ":0.7' --lora '" + b + "'");
  REQUIRE(r.code == 0);
  const auto sidecar = nlohmann::json::parse(cli::slurp(temp_dir() / "lora.json"));
  REQUIRE(sidecar["loras"].size() == 2);
  CHECK(sidecar["loras"][0]["path"] == a);
  CHECK(sidecar["loras"][0]["scale"] == 0.7);
  CHECK(sidecar["loras"][0]["sha256"].get<std::string>().size() == 64);
  CHECK(sidecar["loras"][1]["scale"] == 1.0);
  CHECK(sidecar["timings_s"]["lora_merge"].get<double>() >= 0);
  // Scale 0: the base model's image, byte for byte.
  const std::string with_loras = cli::slurp(out);
  CHECK(cli::run_sd(base + "--lora '" + a + ":0'").code == 0);
  const std::string zero = cli::slurp(out);
  CHECK(cli::run_sd(base).code == 0);
  CHECK(cli::slurp(out) == zero);
  CHECK(with_loras != zero);
  // Runtime errors exit 1 with the file named; a missing file fails before the model loads.
  const auto missing = cli::run_sd(base + "--lora '" + (temp_dir() / "absent.safetensors").string() + "'");
  CHECK(missing.code == 1);
  CHECK_THAT(missing.err, Catch::Contains("absent.safetensors"));
  const fs::path bad = edited_lora("cli_bad", [](sd::StateDict& t) { t["lora_unet_nowhere.lora_down.weight"] = torch::ones({4, 32});
                                                                   t["lora_unet_nowhere.lora_up.weight"] = torch::ones({32, 4}); });
  const auto strict = cli::run_sd(base + "--lora '" + bad.string() + "'");
  CHECK(strict.code == 1);
  CHECK_THAT(strict.err, Catch::Contains("lora_unet_nowhere.lora_down.weight: matches no layer"));
  CHECK(cli::run_sd(base + "--lora '" + bad.string() + "' --lora-lenient").code == 0);
  CHECK(nlohmann::json::parse(cli::slurp(temp_dir() / "lora.json"))["lora_skipped_keys"].size() == 1);
  CHECK(cli::run_sd(base + "--lora '" + a + ":nan'").code == 1);

  const auto inspect = cli::run_sd("inspect '" + (data_dir() / "lora_a_kohya_ldm.safetensors").string() + "' --keys");
  CHECK(inspect.code == 0);
  CHECK_THAT(inspect.out, Catch::Contains("LoRA (kohya, UNet names ldm): UNet 18 modules, text encoder 18 modules"));
  CHECK_THAT(inspect.out, Catch::Contains("unet:input_blocks_1_1_proj_in"));
  const auto peft = cli::run_sd("inspect '" + b + "'");
  CHECK_THAT(peft.out, Catch::Contains("LoRA (diffusers-peft): UNet 18 modules"));
  CHECK_THAT(peft.out, Catch::Contains("alpha 3 (36 modules)"));
}
