// A VAE replacing the model's (LoadOptions::vae, `sd generate --vae`): the single-file VAE with LDM
// names (tests/data/vae/vae_kl_ldm, made by tests/reference/make_vae_single_file.py and checked
// there with diffusers' own convert_ldm_vae_checkpoint) against diffusers' decode and encode; the
// pipeline with the VAE folder and with that file; and the one-line errors for files that do not fit.
#include <torch/torch.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "cli_run.h"
#include "core/json_config.h"
#include "golden.h"
#include "models/configs.h"
#include "models/vae.h"
#include "pipeline/separate_vae.h"
#include "sd/error.h"
#include "sd/pipeline.h"
#include "sd/safetensors.h"
#include "scratch.h"
#include "vae_ref.h"

namespace {
namespace fs = std::filesystem;

fs::path vae_kl_dir() { return vae_ref::dir() / "vae_kl"; }
fs::path ldm_file() { return vae_ref::dir() / "vae_kl_ldm/vae.safetensors"; }
fs::path tiny_pipeline() { return golden::dir() / "pipelines/sd1_tiny"; }

// A folder of this test, removed afterwards.
struct Scratch : scratch::Dir {
  explicit Scratch(const std::string& name) : scratch::Dir("separate_vae", name) {}
};

// sd1_tiny's configs and tokenizer with vae_kl's VAE config: a "random:" model that vae_kl fits.
fs::path configs_for_vae_kl(const fs::path& dir) {
  for (const char* part : {"scheduler", "text_encoder", "unet", "vae"}) fs::create_directories(dir / part);
  for (const char* file : {"model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json",
                           "unet/config.json"}) {
    fs::copy_file(tiny_pipeline() / file, dir / file);
  }
  fs::copy(tiny_pipeline() / "tokenizer", dir / "tokenizer", fs::copy_options::recursive);
  fs::copy_file(vae_kl_dir() / "config.json", dir / "vae/config.json");
  return dir;
}

using scratch::error_of;

// One line that names `file` and says `what`.
void check_one_line_error(const std::string& message, const fs::path& file, const std::string& what) {
  INFO(message);
  CHECK(message.find(file.filename().string()) != std::string::npos);
  CHECK(message.find(what) != std::string::npos);
  CHECK(message.find('\n') == std::string::npos);
}

sd::GenerateOptions small_generation() {
  sd::GenerateOptions opt;
  opt.width = opt.height = 64;
  opt.steps = 2;
  opt.seed = 5;
  return opt;
}

sd::LoadOptions with_vae(const fs::path& vae) {
  sd::LoadOptions load;
  load.channels_last = false;
  load.vae = vae.string();
  return load;
}

}  // namespace

TEST_CASE("A single-file LDM VAE loads as diffusers' converter loads it and decodes as diffusers does",
          "[parity][separate-vae]") {
  c10::InferenceMode guard;
  const auto config = sd::VAEConfig::from_file(vae_kl_dir() / "config.json");
  const sd::SeparateVae file = sd::read_separate_vae(ldm_file(), config, "vae_kl/config.json", "");
  CHECK(file.layout == "single file, LDM names");
  // The renaming gives back vae_kl's diffusers state dict exactly, the 1x1-conv attention included.
  const sd::StateDict expected = sd::load_safetensors(vae_kl_dir() / "diffusion_pytorch_model.safetensors");
  REQUIRE(file.weights.size() == expected.size());
  for (const auto& [name, tensor] : expected) {
    INFO(name);
    REQUIRE(file.weights.count(name) == 1);
    CHECK(torch::equal(file.weights.at(name), tensor));
  }

  sd::AutoencoderKL vae(file.config, /*with_encoder=*/true);
  sd::bind_separate_vae(vae, file, {});
  vae->eval();
  const auto& decode_case = golden::find_case_in(vae_ref::manifest(), "cases/kl_ldm_decode_12x20");
  auto dref = vae_ref::case_tensors(decode_case);
  CHECK_CLOSE_TO_GOLDEN(vae->decode(dref.at("latents")), dref.at("image"), golden::tolerance_of(decode_case));
  const auto& encode_case = golden::find_case_in(vae_ref::manifest(), "cases/kl_ldm_encode_24x40");
  auto eref = vae_ref::case_tensors(encode_case);
  const auto d = vae->encode(eref.at("image"));
  CHECK_CLOSE_TO_GOLDEN(d.mean, eref.at("mean"), golden::tolerance_of(encode_case));
  CHECK_CLOSE_TO_GOLDEN(d.logvar, eref.at("logvar"), golden::tolerance_of(encode_case));
}

TEST_CASE("LoadOptions::vae replaces the model's VAE: the folder and the LDM file give the same images",
          "[unit][separate-vae]") {
  Scratch scratch("pipeline");
  const std::string model = "random:" + configs_for_vae_kl(scratch.path).string();
  sd::LoadOptions plain;
  plain.channels_last = false;
  auto own = sd::Pipeline::load(model, plain);
  auto folder = sd::Pipeline::load(model, with_vae(vae_kl_dir()));
  auto file = sd::Pipeline::load(model, with_vae(ldm_file()));
  CHECK(own.info().vae_source == "random weights");
  CHECK(folder.info().vae_source == vae_kl_dir().string() + "/diffusion_pytorch_model.safetensors (diffusers folder)");
  CHECK(file.info().vae_source == ldm_file().string() + " (single file, LDM names)");

  const auto a = own.generate("a lighthouse", small_generation());
  const auto b = folder.generate("a lighthouse", small_generation());
  const auto c = file.generate("a lighthouse", small_generation());
  REQUIRE(torch::equal(a.latents, b.latents));  // the UNet and text encoder are the same random ones
  REQUIRE(torch::equal(b.latents, c.latents));
  CHECK(torch::equal(b.images01, c.images01));
  CHECK((a.images01 - b.images01).abs().max().item<double>() > 0.05);

  // The image is vae_kl's decode of the latents, as diffusers' pipeline makes it.
  torch::NoGradGuard no_grad;
  sd::AutoencoderKL vae(sd::VAEConfig::from_file(vae_kl_dir() / "config.json"), false);
  sd::bind_separate_vae(vae, sd::read_separate_vae(vae_kl_dir(), vae->config, "", ""), {"encoder.", "quant_conv."});
  vae->eval();
  const auto expected = (vae->decode(b.latents / vae->config.scaling_factor) / 2 + 0.5).clamp(0, 1);
  CHECK(torch::allclose(b.images01, expected, 0, 1e-5));

  // Image-to-image encodes with it too: the file's encoder is bound with LoadOptions::vae_encoder.
  sd::LoadOptions encoding = with_vae(ldm_file());
  encoding.vae_encoder = true;
  auto editor = sd::Pipeline::load(model, encoding);
  const auto pixels = b.images01 * 2 - 1;
  sd::AutoencoderKL full(vae->config, true);
  sd::bind_separate_vae(full, sd::read_separate_vae(ldm_file(), full->config, "", ""), {});
  full->eval();
  CHECK(torch::allclose(editor.encode(pixels, nullptr), full->encode(pixels).mean * full->config.scaling_factor, 0,
                        1e-5));
}

TEST_CASE("A VAE folder brings its own config; a single file must fit the model's", "[unit][separate-vae]") {
  // sd1_tiny's VAE has 32/64 channels and 2 resnets per block, vae_kl 8/16 and 1: the same latent
  // channels and factor, so vae_kl's folder replaces it, but its single file has no config of its own.
  sd::LoadOptions plain;
  plain.channels_last = false;
  auto own = sd::Pipeline::load(tiny_pipeline().string(), plain);
  auto replaced = sd::Pipeline::load(tiny_pipeline().string(), with_vae(vae_kl_dir()));
  const auto a = own.generate("a lighthouse", small_generation());
  const auto b = replaced.generate("a lighthouse", small_generation());
  REQUIRE(torch::equal(a.latents, b.latents));
  CHECK((a.images01 - b.images01).abs().max().item<double>() > 0.05);
  CHECK(replaced.info().vae_parameters < own.info().vae_parameters);

  const std::string message = error_of([&] { sd::Pipeline::load(tiny_pipeline().string(), with_vae(ldm_file())); });
  check_one_line_error(message, ldm_file(), "layers_per_block");
}

TEST_CASE("Files that are no VAE, or no VAE of this size, are one error line naming the file",
          "[unit][separate-vae]") {
  Scratch scratch("errors");
  const std::string model = "random:" + configs_for_vae_kl(scratch.path / "model").string();
  auto load_error = [&](const fs::path& vae) { return error_of([&] { sd::Pipeline::load(model, with_vae(vae)); }); };

  const fs::path unet = tiny_pipeline() / "unet/diffusion_pytorch_model.safetensors";
  check_one_line_error(load_error(unet), unet, "it looks like a diffusers UNet");
  const fs::path taesd_file = vae_ref::dir() / "taesd/diffusion_pytorch_model.safetensors";
  check_one_line_error(load_error(taesd_file), taesd_file, "tiny autoencoder (TAESD)");
  const fs::path taesd_original = vae_ref::dir() / "taesd_original/taesd_decoder.safetensors";
  check_one_line_error(load_error(taesd_original), taesd_original, "tiny autoencoder (TAESD)");
  check_one_line_error(load_error(vae_ref::dir() / "taesd"), vae_ref::dir() / "taesd/config.json",
                       "tiny autoencoder (TAESD");
  check_one_line_error(load_error(scratch.path / "missing.safetensors"), scratch.path / "missing.safetensors",
                       "no such VAE file");
  std::ofstream(scratch.path / "vae.ckpt") << "not really a pickle";
  check_one_line_error(load_error(scratch.path / "vae.ckpt"), scratch.path / "vae.ckpt", "pickle");

  // One tensor of the wrong shape, under its own (LDM) name with both shapes; one missing.
  sd::StateDict tensors = sd::load_safetensors(ldm_file());
  tensors["decoder.mid.attn_1.q.weight"] = torch::zeros({16, 8, 1, 1});
  const fs::path wrong = scratch.path / "wrong_shape.safetensors";
  sd::save_safetensors(wrong, tensors);
  const std::string shape_message = load_error(wrong);
  check_one_line_error(shape_message, wrong, "tensor 'decoder.mid.attn_1.q.weight' has shape [16, 8, 1, 1]");
  CHECK(shape_message.find("expects [16, 16]") != std::string::npos);

  tensors = sd::load_safetensors(ldm_file());
  tensors.erase("decoder.up.1.block.0.conv2.bias");
  const fs::path incomplete = scratch.path / "incomplete.safetensors";
  sd::save_safetensors(incomplete, tensors);
  check_one_line_error(load_error(incomplete), incomplete, "1 VAE tensors are missing");

  // A config that does not describe its weights.
  fs::create_directories(scratch.path / "vae8");
  auto config = sd::read_json_file(vae_kl_dir() / "config.json");
  config["latent_channels"] = 8;
  std::ofstream(scratch.path / "vae8/config.json") << config.dump(2);
  fs::copy_file(vae_kl_dir() / "diffusion_pytorch_model.safetensors",
                scratch.path / "vae8/diffusion_pytorch_model.safetensors");
  check_one_line_error(load_error(scratch.path / "vae8"), scratch.path / "vae8/config.json", "latent_channels");
}

TEST_CASE("A VAE folder must have the model's latent channels and downscale factor", "[unit][separate-vae]") {
  // The UNet works in the model's latents, and the image size follows its VAE's factor.
  sd::VAEConfig model = sd::VAEConfig::from_file(vae_kl_dir() / "config.json");
  model.latent_channels = 8;
  check_one_line_error(error_of([&] { sd::read_separate_vae(vae_kl_dir(), model, "model/vae/config.json", ""); }),
                       vae_kl_dir() / "config.json", "the VAE has 4 latent channels, the model (model/vae/config.json) 8");
  model = sd::VAEConfig::from_file(vae_kl_dir() / "config.json");
  model.block_out_channels = {8, 16, 16};
  check_one_line_error(error_of([&] { sd::read_separate_vae(vae_kl_dir(), model, "model/vae/config.json", ""); }),
                       vae_kl_dir() / "config.json", "scales images by 2, the model's (model/vae/config.json) by 4");
}

TEST_CASE("sd generate --vae FILE draws with the file's VAE; a bad --vae exits 1 with one line",
          "[unit][cli][separate-vae]") {
  Scratch scratch("cli");
  const std::string model = "random:" + configs_for_vae_kl(scratch.path / "model").string();
  const fs::path png = scratch.path / "out.png";
  const auto ok = cli::run_sd("generate --model '" + model + "' --vae '" + ldm_file().string() +
                              "' --prompt x --steps 2 --height 64 --width 64 -q -o '" + png.string() + "'");
  REQUIRE(ok.code == 0);
  CHECK(sd::read_image(png).width == 64);
  const auto sidecar = nlohmann::json::parse(cli::slurp(scratch.path / "out.json"));
  CHECK(sidecar["vae"] == ldm_file().string() + " (single file, LDM names)");

  const fs::path unet = tiny_pipeline() / "unet/diffusion_pytorch_model.safetensors";
  const auto bad = cli::run_sd("generate --model '" + model + "' --vae '" + unet.string() +
                               "' --prompt x --steps 2 -q -o '" + (scratch.path / "bad.png").string() + "'");
  CHECK(bad.code == 1);
  CHECK(bad.err.find(unet.string() + ": not a VAE") != std::string::npos);
  CHECK(std::count(bad.err.begin(), bad.err.end(), '\n') == 1);
  CHECK_FALSE(fs::exists(scratch.path / "bad.png"));
}
