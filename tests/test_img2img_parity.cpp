// Image-to-image and inpainting against diffusers 0.27.2 (StableDiffusionImg2ImgPipeline,
// StableDiffusionInpaintPipeline), recorded by tests/reference/make_img2img_inpaint.py into
// tests/data/img2img (its docstring says how to rerun it): the image processor's bytes exactly,
// then every step's latents and the image of each case within the manifest's tolerance, through
// the library and through `sd generate`.
#include <torch/torch.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli_run.h"
#include "golden.h"
#include "golden_e2e.h"
#include "pipeline/image_inputs.h"
#include "sd/error.h"
#include "sd/image.h"
#include "sd/pipeline.h"
#include "sd/safetensors.h"
#include "sd/scheduler.h"

namespace {
namespace fs = std::filesystem;

fs::path data_dir() { return fs::path(LIBSD_SOURCE_DIR) / "tests/data/img2img"; }

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  return nlohmann::json::parse(in);
}

const nlohmann::json& manifest() {
  static const nlohmann::json m = read_json(data_dir() / "manifest.json");
  return m;
}

sd::StateDict case_tensors(const std::string& name) {
  return sd::load_safetensors(data_dir() / (name + ".safetensors"));
}

// The inpainting pipeline: sd1_tiny with its UNet replaced by the 9-channel one, assembled from
// links in a temporary folder (the reference script builds the same pipeline in memory).
fs::path inpaint9_pipeline() {
  static const fs::path dir = [] {
    const fs::path d = cli::temp_dir() / "inpaint9";
    fs::create_directories(d);
    const fs::path base = golden::dir() / "pipelines/sd1_tiny";
    for (const char* part : {"model_index.json", "text_encoder", "tokenizer", "vae", "scheduler"}) {
      if (!fs::exists(d / part)) fs::create_symlink(fs::absolute(base / part), d / part);
    }
    if (!fs::exists(d / "unet")) fs::create_symlink(data_dir() / "inpaint9_unet", d / "unet");
    return d;
  }();
  return dir;
}

fs::path pipeline_dir(const std::string& name) {
  const std::string golden_prefix = "golden:";
  if (name.rfind(golden_prefix, 0) == 0) return golden::dir() / name.substr(golden_prefix.size());
  REQUIRE(name == "inpaint9");
  return inpaint9_pipeline();
}

sd::Pipeline& pipeline_for(const std::string& name) {
  static std::map<std::string, sd::Pipeline> loaded;
  auto it = loaded.find(name);
  if (it == loaded.end()) {
    sd::LoadOptions load;
    load.vae_encoder = true;
    it = loaded.emplace(name, sd::Pipeline::load(pipeline_dir(name).string(), load)).first;
  }
  return it->second;
}

sd::GenerateOptions options_of(const nlohmann::json& meta, const sd::StateDict& ref) {
  sd::GenerateOptions opt;
  opt.negative_prompt = meta["negative_prompt"].is_null() ? "" : meta["negative_prompt"].get<std::string>();
  opt.guidance_scale = meta["guidance_scale"];
  opt.steps = meta["steps"];
  opt.strength = meta["strength"].get<double>();
  if (!meta["height"].is_null()) opt.height = meta["height"];
  if (!meta["width"].is_null()) opt.width = meta["width"];
  opt.scheduler = sd::scheduler_kind_from_name(meta["scheduler"].get<std::string>());
  if (!meta["eta"].is_null()) opt.eta = meta["eta"];
  opt.batch = meta["batch"];
  if (!meta["generator_seed"].is_null()) {
    opt.seed = meta["generator_seed"];
  } else {
    opt.initial_latents = ref.at("given_latents");
  }
  opt.init_image = sd::read_image(data_dir() / meta["init_image"].get<std::string>());
  if (!meta["mask"].is_null()) opt.mask = sd::read_image(data_dir() / meta["mask"].get<std::string>());
  opt.keep_step_latents = true;
  return opt;
}

at::Tensor image_tensor_u8(const sd::Image& image) {
  return torch::from_blob(const_cast<uint8_t*>(image.rgb.data()), {image.height, image.width, 3}, torch::kUInt8)
      .clone();
}

}  // namespace

TEST_CASE("Pillow's Lanczos resize and grayscale conversion, byte for byte", "[parity][img2img]") {
  const auto cases = golden::cases_of_kind_in(manifest(), "resize");
  REQUIRE(!cases.empty());
  for (const auto& entry : cases) {
    const std::string name = entry["name"];
    INFO(name);
    const auto meta = read_json(data_dir() / (name + ".json"));
    const auto ref = case_tensors(name);
    const sd::Image source = sd::read_image(data_dir() / meta["source"].get<std::string>());
    if (meta.value("operation", "") == "convert_L") {
      const auto expected = ref.at("output").to(torch::kUInt8);
      const auto gray = image_tensor_u8(sd::to_grayscale(source)).select(2, 0);
      CHECK(torch::equal(gray, expected.reshape(gray.sizes())));
      continue;
    }
    if (meta.value("operation", "") == "resize") {
      const int w = meta["width"], h = meta["height"];
      const auto expected = ref.at("output").to(torch::kUInt8);
      sd::Image input = meta.value("mode", "RGB") == "L" ? sd::to_grayscale(source) : source;
      auto ours = image_tensor_u8(sd::resize_lanczos(input, w, h));
      if (expected.dim() == 2 || (expected.dim() == 3 && expected.size(2) == 1)) ours = ours.select(2, 0);
      const auto diff = (ours.to(torch::kInt) - expected.reshape(ours.sizes()).to(torch::kInt)).abs().max().item<int>();
      INFO("max level difference " << diff);
      CHECK(diff == 0);
      continue;
    }
    // The image processors' tensors.
    const int w = meta["width"], h = meta["height"];
    if (ref.count("image_tensor") != 0) {
      CHECK(torch::equal(sd::image_to_tensor(source, w, h), ref.at("image_tensor")));
    }
    if (ref.count("mask_tensor") != 0) {
      CHECK(torch::equal(sd::mask_to_tensor(source, w, h), ref.at("mask_tensor")));
    }
  }
}

TEST_CASE("image-to-image and inpainting match diffusers at every step", "[parity][e2e][img2img]") {
  std::vector<nlohmann::json> cases = golden::cases_of_kind_in(manifest(), "img2img");
  for (const auto& c : golden::cases_of_kind_in(manifest(), "inpaint")) cases.push_back(c);
  REQUIRE(cases.size() >= 10);
  for (const auto& entry : cases) {
    const std::string name = entry["name"];
    SECTION(name) {
      const auto meta = read_json(data_dir() / (name + ".json"));
      const auto ref = case_tensors(name);
      sd::Pipeline& pipe = pipeline_for(meta["pipeline"]);
      const sd::GenerateOptions opt = options_of(meta, ref);
      const auto result = pipe.generate(meta["prompt"], opt);
      CHECK(result.width == meta["output_size"][1].get<int>());
      CHECK(result.height == meta["output_size"][0].get<int>());
      // What the image processors made of the inputs, exactly.
      CHECK(torch::equal(sd::image_to_tensor(*opt.init_image, result.width, result.height), ref.at("init_image")));
      if (opt.mask) {
        CHECK(torch::equal(sd::mask_to_tensor(*opt.mask, result.width, result.height), ref.at("mask_condition")));
      }
      golden::check_e2e_result(result, ref, entry);
    }
  }
}

namespace {

// `sd generate` for a recorded case: the same settings on the command line.
std::string generate_args(const nlohmann::json& meta, const fs::path& model, const fs::path& out) {
  std::ostringstream args;
  args << "generate --model '" << model.string() << "' --prompt '" << meta["prompt"].get<std::string>() << "'"
       << " --steps " << meta["steps"].get<int>() << " --guidance " << meta["guidance_scale"].get<double>()
       << " --scheduler " << meta["scheduler"].get<std::string>() << " --seed " << meta["generator_seed"].get<int>()
       << " --strength " << meta["strength"].get<double>() << " --init-image '"
       << (data_dir() / meta["init_image"].get<std::string>()).string() << "'";
  if (!meta["negative_prompt"].is_null()) args << " --negative-prompt '" << meta["negative_prompt"].get<std::string>() << "'";
  if (!meta["mask"].is_null()) args << " --mask '" << (data_dir() / meta["mask"].get<std::string>()).string() << "'";
  if (!meta["height"].is_null()) args << " --height " << meta["height"].get<int>() << " --width " << meta["width"].get<int>();
  args << " -q -o '" << out.string() << "'";
  return args.str();
}

}  // namespace

TEST_CASE("sd generate --init-image and --mask reproduce diffusers' images and record their inputs", "[parity][cli][img2img]") {
  for (const std::string name : {"e2e/img2img_pndm_s0.75", "e2e/inpaint9_pndm_s1.0"}) {
    SECTION(name) {
      const auto meta = read_json(data_dir() / (name + ".json"));
      const auto ref = case_tensors(name);
      const fs::path out = cli::temp_dir() / (fs::path(name).filename().string() + ".png");
      const auto r = cli::run_sd(generate_args(meta, pipeline_dir(meta["pipeline"]), out));
      REQUIRE(r.code == 0);
      const sd::Image image = sd::read_image(out);
      const auto ours = image_tensor_u8(image).to(torch::kInt);
      const auto theirs = ref.at("image_uint8")[0].to(torch::kInt);
      REQUIRE(ours.sizes() == theirs.sizes());
      CHECK((ours - theirs).abs().max().item<int>() <= 1);
      const auto sidecar = read_json(fs::path(out).replace_extension(".json"));
      CHECK(sidecar["mode"] == (meta["mask"].is_null() ? "img2img" : "inpaint"));
      CHECK(sidecar["strength"].get<double>() == meta["strength"].get<double>());
      CHECK(sidecar["init_image"]["sha256"].get<std::string>().size() == 64);
      CHECK(sidecar["first_step"].get<int>() == meta["steps"].get<int>() + 1 - ref.at("timesteps").size(0));
      CHECK(sidecar["width"] == meta["output_size"][1]);
      if (!meta["mask"].is_null()) CHECK(sidecar["mask"]["path"] == (data_dir() / meta["mask"].get<std::string>()).string());
    }
  }
}

TEST_CASE("bad init images and masks: one line, exit 1, no output; misused options: exit 2", "[unit][cli][img2img]") {
  const fs::path tiny = golden::dir() / "pipelines/sd1_tiny";
  const fs::path good = data_dir() / "inputs/image_32x32.png";
  const fs::path bad = cli::temp_dir() / "not-an-image.png";
  {
    std::ofstream f(bad);
    f << "plain text";
  }
  const fs::path out = cli::temp_dir() / "bad-input.png";
  const std::string base = "generate --model '" + tiny.string() + "' --prompt x --steps 2 -q -o '" + out.string() + "' ";
  for (const std::string& args : {"--init-image '" + bad.string() + "'",
                                 "--init-image '" + good.string() + "' --mask '" + bad.string() + "'",
                                 "--init-image '" + good.string() + "' --mask /no/such/mask.png"}) {
    const auto r = cli::run_sd(base + args);
    CHECK(r.code == 1);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK(!fs::exists(out));
    CHECK(!fs::exists(fs::path(out).replace_extension(".json")));
  }
  CHECK_THAT(cli::run_sd(base + "--init-image '" + bad.string() + "'").err, Catch::Contains("not-an-image.png"));
  CHECK(cli::run_sd(base + "--mask '" + good.string() + "'").code == 2);         // a mask needs an init image
  CHECK(cli::run_sd(base + "--strength 0.5").code == 2);                          // strength needs an init image
  CHECK(cli::run_sd(base + "--init-image '" + good.string() + "' --strength 1.5").code == 2);
  CHECK(cli::run_sd(base + "--init-image '" + good.string() + "' --strength nan").code == 2);
}

TEST_CASE("image-to-image refuses what it cannot do, clearly", "[unit][img2img]") {
  sd::LoadOptions text_only;
  auto pipe = sd::Pipeline::load((golden::dir() / "pipelines/sd1_tiny").string(), text_only);
  sd::GenerateOptions opt;
  opt.steps = 4;
  opt.init_image = sd::read_image(data_dir() / "inputs/image_32x32.png");
  CHECK_THROWS_WITH(pipe.generate("x", opt), Catch::Contains("vae_encoder"));
  sd::LoadOptions with_encoder;
  with_encoder.vae_encoder = true;
  auto img2img = sd::Pipeline::load((golden::dir() / "pipelines/sd1_tiny").string(), with_encoder);
  opt.strength = 0.1;  // int(4 * 0.1) = 0 steps
  CHECK_THROWS_WITH(img2img.generate("x", opt), Catch::Contains("runs no step"));
  opt.strength = -0.5;
  CHECK_THROWS_WITH(img2img.generate("x", opt), Catch::Contains("strength must be in [0, 1]"));
  opt.strength.reset();
  opt.init_image.reset();
  opt.mask = sd::read_image(data_dir() / "inputs/mask_32x32.png");
  CHECK_THROWS_WITH(img2img.generate("x", opt), Catch::Contains("a mask needs an init image"));
  // The pipeline stays usable after refusals: a plain generation still works.
  opt.mask.reset();
  const auto result = img2img.generate("x", opt);
  CHECK(result.images.size() == 1);
  CHECK(result.first_step == 0);

  // An inpainting model without a mask is refused rather than fed 4 channels.
  auto inpaint = sd::Pipeline::load(inpaint9_pipeline().string(), with_encoder);
  CHECK(inpaint.info().unet_in_channels == 9);
  opt.init_image = sd::read_image(data_dir() / "inputs/image_32x32.png");
  CHECK_THROWS_WITH(inpaint.generate("x", opt), Catch::Contains("inpainting model"));
}
