// A single-file (CompVis/LDM) checkpoint loads to the same pipeline as the diffusers folder it was
// made from. The checkpoint is made here: a small model with SD 1.5's block layout (so the real
// SD 1.5 single-file key names from sd15-keys.json apply) but few channels.
#include <torch/torch.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "core/json_config.h"
#include "golden.h"
#include "models/clip_text.h"
#include "models/unet.h"
#include "models/vae.h"
#include "sd/pipeline.h"
#include "weights/ldm_to_diffusers.h"

namespace {
namespace fs = std::filesystem;

void write_json(const fs::path& path, const nlohmann::json& json) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << json.dump(2);
}

// The SD 1.5 configs with small widths; the layout (blocks, layers, attention placement) is unchanged.
fs::path make_small_sd15_folder(const fs::path& dir) {
  const fs::path sd15 = fs::path(LIBSD_SOURCE_DIR) / "weights/sd-v1-5";
  auto unet = sd::read_json_file(sd15 / "unet/config.json");
  unet["block_out_channels"] = {32, 64, 128, 128};  // widths change where SD 1.5's do
  unet["attention_head_dim"] = 2;
  unet["cross_attention_dim"] = 32;
  unet["norm_num_groups"] = 8;
  unet["sample_size"] = 8;
  auto vae = sd::read_json_file(sd15 / "vae/config.json");
  vae["block_out_channels"] = {32, 64, 128, 128};
  write_json(dir / "unet/config.json", unet);
  write_json(dir / "vae/config.json", vae);
  write_json(dir / "text_encoder/config.json",
             sd::read_json_file(golden::dir() / "pipelines/sd1_tiny/text_encoder/config.json"));
  write_json(dir / "scheduler/scheduler_config.json", sd::read_json_file(sd15 / "scheduler/scheduler_config.json"));
  write_json(dir / "model_index.json", sd::read_json_file(sd15 / "model_index.json"));
  fs::create_directories(dir / "tokenizer");
  for (const auto& entry : fs::directory_iterator(sd15 / "tokenizer")) {
    fs::copy_file(entry.path(), dir / "tokenizer" / entry.path().filename());
  }
  return dir;
}

sd::StateDict state_of(const torch::nn::Module& module) {
  sd::StateDict out;
  for (const auto& p : module.named_parameters()) out[p.key()] = p.value().detach().clone();
  return out;
}

}  // namespace

namespace {

// Random small weights for the folder's configs, saved in its diffusers layout and, under the real
// SD 1.5 single-file names, to `file`.
void write_weights(const fs::path& folder, const fs::path& file) {

  // 1. Random small weights, saved in the diffusers layout.
  torch::manual_seed(11);
  sd::UNet2DConditionModel unet(sd::UNetConfig::from_file(folder / "unet/config.json"));
  sd::AutoencoderKL vae(sd::VAEConfig::from_file(folder / "vae/config.json"));
  sd::CLIPTextModel clip(sd::CLIPTextConfig::from_file(folder / "text_encoder/config.json"));
  const auto unet_w = state_of(*unet), vae_w = state_of(*vae), clip_w = state_of(*clip);
  sd::save_safetensors(folder / "unet/diffusion_pytorch_model.safetensors", unet_w);
  sd::save_safetensors(folder / "vae/diffusion_pytorch_model.safetensors", vae_w);
  sd::save_safetensors(folder / "text_encoder/model.safetensors", clip_w);

  // 2. The same weights under the real SD 1.5 single-file names. Which LDM name becomes which
  //    diffusers name is learned by mapping placeholders (told apart by their storage).
  std::ifstream keys_in(golden::dir() / "sd15-keys.json");
  const auto ldm_keys = nlohmann::json::parse(keys_in)["single_file"];
  sd::StateDict placeholders;
  std::map<const void*, std::string> ldm_name_of;
  for (auto it = ldm_keys.begin(); it != ldm_keys.end(); ++it) {
    if (it.key().rfind("cond_stage_model.", 0) == 0) continue;  // CLIP: a plain prefix, added below
    auto shape = it.value().is_array() ? it.value().get<std::vector<int64_t>>()
                                       : it.value()["shape"].get<std::vector<int64_t>>();
    auto t = torch::empty(shape);  // untouched pages: no real memory
    ldm_name_of[t.data_ptr()] = it.key();
    placeholders[it.key()] = t;
  }
  auto split = sd::ldm_to_diffusers(placeholders);
  sd::NamedTensors checkpoint;
  auto add = [&](const sd::StateDict& mapped, const sd::StateDict& small) {
    for (const auto& [diffusers_name, placeholder] : mapped) {
      INFO("diffusers name " << diffusers_name);
      REQUIRE(ldm_name_of.count(placeholder.data_ptr()) == 1);
      const std::string& ldm = ldm_name_of.at(placeholder.data_ptr());
      REQUIRE(small.count(diffusers_name) == 1);
      auto w = small.at(diffusers_name);
      if (placeholders.at(ldm).dim() == 4 && w.dim() == 2) w = w.unsqueeze(-1).unsqueeze(-1);  // 1x1-conv attention
      checkpoint.emplace_back(ldm, w);
    }
  };
  add(split.unet, unet_w);
  add(split.vae, vae_w);
  REQUIRE(split.unet.size() == unet_w.size());
  REQUIRE(split.vae.size() == vae_w.size());
  for (const auto& [name, w] : clip_w) checkpoint.emplace_back("cond_stage_model.transformer." + name, w);
  checkpoint.emplace_back("alphas_cumprod", torch::ones({1000}));  // non-weights real files carry
  sd::save_safetensors(file, checkpoint);

}

// A fresh folder with a small SD 1.5-shaped diffusers pipeline and the same weights as one
// single-file checkpoint in it: {folder, diffusers folder, model.safetensors}.
struct SingleFilePair {
  fs::path tmp, folder, file;
};
SingleFilePair make_single_file_pair(const std::string& name) {
  const fs::path tmp = fs::temp_directory_path() / ("libsd-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  const fs::path folder = make_small_sd15_folder(tmp / "diffusers");
  const fs::path file = tmp / "model.safetensors";
  write_weights(folder, file);
  return {tmp, folder, file};
}

}  // namespace

TEST_CASE("A single-file checkpoint loads to the same pipeline as its diffusers folder", "[unit][single-file]") {
  const auto [tmp, folder, file] = make_single_file_pair("single");

  // 3. Both load and generate the same latents.
  sd::LoadOptions load;
  load.channels_last = false;
  auto from_folder = sd::Pipeline::load(folder.string(), load);
  load.config_dir = folder;
  auto from_file = sd::Pipeline::load(file.string(), load);
  CHECK(from_file.info().format == "single-file");
  CHECK(from_file.info().unet_parameters == from_folder.info().unet_parameters);
  sd::GenerateOptions opt;
  opt.width = opt.height = 64;
  opt.steps = 2;
  opt.seed = 5;
  auto a = from_folder.generate("a lighthouse", opt);
  auto b = from_file.generate("a lighthouse", opt);
  CHECK(torch::equal(a.latents, b.latents));
  CHECK(torch::equal(a.images01, b.images01));
  fs::remove_all(tmp);
}

// The `sd` binary (label cli: the sanitizer builds, which build no tools, leave it out).
TEST_CASE("sd inspect --keys finds every key of a single-file checkpoint", "[unit][cli][single-file]") {
  const auto [tmp, folder, file] = make_single_file_pair("single-inspect");
  const std::string cmd = std::string("'" LIBSD_BINARY_DIR "/tools/sd' inspect '") + file.string() +
                          "' --keys --config-dir '" + folder.string() + "' > '" + (tmp / "inspect.txt").string() + "'";
  CHECK(std::system(cmd.c_str()) == 0);
  std::ifstream report(tmp / "inspect.txt");
  std::string text((std::istreambuf_iterator<char>(report)), std::istreambuf_iterator<char>());
  INFO(text);
  CHECK(text.find("single-file checkpoint") != std::string::npos);
  CHECK(text.find("unet: 686 keys expected, 0 differences") != std::string::npos);
  fs::remove_all(tmp);
}

TEST_CASE("A single-file inpainting checkpoint with its base model's configs loads as an inpainting UNet",
          "[unit][single-file][img2img]") {
  // The SD 1.5 inpainting file is SD 1.5's layout with a 9-channel first convolution; people load it
  // with SD 1.5's configs (in_channels 4), and the file's conv_in shape decides.
  const fs::path tmp = fs::temp_directory_path() / ("libsd-single-inpaint-" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  const fs::path folder = make_small_sd15_folder(tmp / "diffusers");
  auto unet_config = sd::read_json_file(folder / "unet/config.json");
  unet_config["in_channels"] = 9;
  write_json(folder / "unet/config.json", unet_config);
  const fs::path file = tmp / "inpainting.safetensors";
  write_weights(folder, file);
  const fs::path base_configs = make_small_sd15_folder(tmp / "base-configs");  // in_channels 4

  sd::LoadOptions load;
  load.channels_last = false;
  load.vae_encoder = true;
  auto from_folder = sd::Pipeline::load(folder.string(), load);
  load.config_dir = base_configs;
  auto from_file = sd::Pipeline::load(file.string(), load);
  CHECK(from_file.info().unet_in_channels == 9);
  CHECK(from_file.info().unet_parameters == from_folder.info().unet_parameters);

  sd::GenerateOptions opt;
  opt.width = opt.height = 64;
  opt.steps = 2;
  opt.seed = 5;
  sd::Image image;
  image.width = image.height = 64;
  image.rgb.assign(64 * 64 * 3, 0);
  for (size_t i = 0; i < image.rgb.size(); ++i) image.rgb[i] = static_cast<uint8_t>((i * 37) % 256);
  sd::Image mask = image;
  for (size_t i = 0; i < mask.rgb.size(); ++i) mask.rgb[i] = (i / 3) % 64 < 32 ? 255 : 0;  // left half
  opt.init_image = image;
  opt.mask = mask;
  auto a = from_folder.generate("a lighthouse", opt);
  auto b = from_file.generate("a lighthouse", opt);
  CHECK(torch::equal(a.latents, b.latents));

  // A first convolution that fits neither 4 nor 9 channels is refused, naming the tensor.
  sd::NamedTensors odd;
  sd::SafetensorsFile checkpoint(file);
  for (const auto& entry : checkpoint.entries()) {
    auto t = checkpoint.get(entry.name);
    if (entry.name == "model.diffusion_model.input_blocks.0.0.weight") t = torch::zeros({t.size(0), 7, 3, 3});
    odd.emplace_back(entry.name, t);
  }
  const fs::path odd_file = tmp / "odd.safetensors";
  sd::save_safetensors(odd_file, odd);
  CHECK_THROWS_WITH(sd::Pipeline::load(odd_file.string(), load),
                    Catch::Contains("input_blocks.0.0.weight") && Catch::Contains("7 input channels"));
  fs::remove_all(tmp);
}
