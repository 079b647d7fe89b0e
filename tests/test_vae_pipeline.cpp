// The VAE options of a pipeline: tiling (on, auto by a memory limit) and the tiny autoencoder
// (TAESD) as decoder and encoder. The tiled and tiny decoders themselves are checked against
// diffusers in test_vae_tiling.cpp / test_vae_tiny.cpp; here, that the pipeline uses them as told.
#include <torch/torch.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "core/json_config.h"
#include "bind_file.h"
#include "golden.h"
#include "models/configs.h"
#include "models/vae.h"
#include "models/vae_tiling.h"
#include "models/vae_tiny.h"
#include "sd/error.h"
#include "sd/pipeline.h"

namespace {
namespace fs = std::filesystem;

fs::path tiny_pipeline() { return golden::dir() / "pipelines/sd1_tiny"; }
fs::path taesd_dir() { return fs::path(LIBSD_SOURCE_DIR) / "tests/data/vae/taesd"; }

sd::GenerateOptions small_generation(int size) {
  sd::GenerateOptions opt;
  opt.width = opt.height = size;
  opt.steps = 2;
  opt.seed = 3;
  return opt;
}

// The image diffusers' pipeline would make from these latents with `decode` as the VAE decode.
template <typename Decode>
at::Tensor image_of(const at::Tensor& latents, double scaling, Decode decode) {
  torch::NoGradGuard no_grad;
  return (decode(latents / scaling) / 2 + 0.5).clamp(0, 1);
}

// A model whose VAE scales by 8, like TAESD: sd1_tiny's configs with a 4-level VAE (for "random:").
fs::path taesd_sized_model(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("libsd-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::copy(tiny_pipeline(), dir, fs::copy_options::recursive);
  auto vae_config = sd::read_json_file(dir / "vae/config.json");
  vae_config["block_out_channels"] = {32, 32, 32, 32};
  vae_config["down_block_types"] = std::vector<std::string>(4, "DownEncoderBlock2D");
  vae_config["up_block_types"] = std::vector<std::string>(4, "UpDecoderBlock2D");
  std::ofstream(dir / "vae/config.json") << vae_config.dump(2);
  return dir;
}

}  // namespace

TEST_CASE("vae_tiling on decodes in tiles; auto tiles only above the memory limit", "[unit][vae-tiling]") {
  // sd1_tiny's VAE has sample_size 64 and two levels: latent tiles of 32, so 128 px images tile.
  sd::LoadOptions plain;
  plain.channels_last = false;
  sd::LoadOptions tiled = plain;
  tiled.vae_tiling = sd::VaeTiling::kOn;
  auto a = sd::Pipeline::load(tiny_pipeline().string(), plain);
  auto b = sd::Pipeline::load(tiny_pipeline().string(), tiled);
  const auto ra = a.generate("a lighthouse", small_generation(128));
  const auto rb = b.generate("a lighthouse", small_generation(128));
  REQUIRE(torch::equal(ra.latents, rb.latents));  // tiling touches the decoder only

  sd::AutoencoderKL vae(sd::VAEConfig::from_file(tiny_pipeline() / "vae/config.json"), false);
  golden::bind_file(vae, tiny_pipeline() / "vae/diffusion_pytorch_model.safetensors", {"encoder.", "quant_conv."});
  const double scaling = a.info().vae_scaling_factor;
  const auto tiled_expected = image_of(rb.latents, scaling, [&](const at::Tensor& z) { return sd::tiled_decode(*vae, z); });
  const auto plain_expected = image_of(ra.latents, scaling, [&](const at::Tensor& z) { return vae->decode(z); });
  CHECK(torch::allclose(rb.images01, tiled_expected, 0, 1e-5));
  CHECK(torch::allclose(ra.images01, plain_expected, 0, 1e-5));
  CHECK((rb.images01 - ra.images01).abs().max().item<double>() > 1e-4);  // the seams are real

  // Below one tile nothing changes, as in diffusers.
  const auto small_plain = a.generate("a lighthouse", small_generation(64));
  const auto small_tiled = b.generate("a lighthouse", small_generation(64));
  CHECK(torch::equal(small_plain.images01, small_tiled.images01));

  sd::LoadOptions automatic = plain;
  automatic.vae_tiling = sd::VaeTiling::kAuto;
  automatic.vae_memory_limit = 1;  // nothing fits: tiles
  auto c = sd::Pipeline::load(tiny_pipeline().string(), automatic);
  CHECK(torch::equal(c.generate("a lighthouse", small_generation(128)).images01, rb.images01));
  automatic.vae_memory_limit = int64_t{1} << 40;  // everything fits: untiled
  auto d = sd::Pipeline::load(tiny_pipeline().string(), automatic);
  CHECK(torch::equal(d.generate("a lighthouse", small_generation(128)).images01, ra.images01));
}

TEST_CASE("vae_tiny decodes and encodes with TAESD instead of the model's VAE", "[unit][vae-tiny]") {
  const fs::path dir = taesd_sized_model("taesd");

  sd::LoadOptions load;
  load.channels_last = false;
  load.vae_encoder = true;
  load.vae_tiny = taesd_dir().string();
  auto pipe = sd::Pipeline::load("random:" + dir.string(), load);
  CHECK(pipe.info().decoder == "AutoencoderTiny");
  const auto result = pipe.generate("a lighthouse", small_generation(64));
  REQUIRE(result.images01.sizes() == c10::IntArrayRef({1, 3, 64, 64}));

  sd::AutoencoderTiny taesd = sd::load_autoencoder_tiny(taesd_dir());
  taesd->eval();
  const auto expected = image_of(result.latents, taesd->config.scaling_factor,
                                 [&](const at::Tensor& z) { return taesd->decode(z); });
  CHECK(torch::allclose(result.images01, expected, 0, 1e-5));

  // Image-to-image encodes with TAESD too: its latents directly, nothing sampled.
  sd::GenerateOptions img2img = small_generation(64);
  img2img.init_image = result.images[0];
  img2img.strength = 0.5;
  const auto edited = pipe.generate("a lighthouse", img2img);
  CHECK(edited.images.size() == 1);
  const auto pixels = result.images01 * 2 - 1;
  torch::NoGradGuard no_grad;
  CHECK(torch::allclose(pipe.encode(pixels, nullptr), taesd->encode(pixels) * taesd->config.scaling_factor, 0, 1e-5));

  // A TAESD that does not fit the model is refused: sd1_tiny's VAE scales by 2.
  sd::LoadOptions wrong = load;
  CHECK_THROWS_WITH(sd::Pipeline::load(tiny_pipeline().string(), wrong), Catch::Contains("scales latents by 8"));
  fs::remove_all(dir);
}

TEST_CASE("previews decode the step latents every preview_every steps, and change nothing else", "[unit][preview]") {
  sd::LoadOptions load;
  load.channels_last = false;
  auto pipe = sd::Pipeline::load(tiny_pipeline().string(), load);
  CHECK(pipe.info().preview_decoder == "AutoencoderKL");
  sd::GenerateOptions opt = small_generation(64);
  opt.steps = 5;
  opt.scheduler = sd::SchedulerKind::kDDIM;  // one UNet evaluation per step (PNDM repeats one)
  opt.keep_step_latents = true;
  const auto plain = pipe.generate("a lighthouse", opt);

  opt.preview_every = 2;
  std::vector<int> preview_steps;
  std::vector<at::Tensor> previews;
  opt.on_step = [&](const sd::StepInfo& step) {
    if (step.preview.defined()) {
      preview_steps.push_back(step.index);
      previews.push_back(step.preview.clone());
    }
    return sd::StepAction::kContinue;
  };
  const auto watched = pipe.generate("a lighthouse", opt);
  CHECK(preview_steps == std::vector<int>{1, 3});  // after steps 2 and 4 of 5
  REQUIRE(previews.size() == 2);
  CHECK(watched.timings.preview_s > 0);
  CHECK(plain.timings.preview_s == 0);
  // Without a tiny autoencoder a preview is the model's VAE decode of that step's latents.
  CHECK(previews[0].device().is_cpu());
  CHECK(torch::equal(previews[0], pipe.decode(watched.step_latents[1])));
  CHECK(torch::equal(previews[1], pipe.decode(watched.step_latents[3])));
  // The generation itself is the same with previews as without.
  CHECK(torch::equal(watched.latents, plain.latents));
  CHECK(torch::equal(watched.images01, plain.images01));

  opt.preview_every = -1;
  CHECK_THROWS_WITH(pipe.generate("a lighthouse", opt), Catch::Contains("preview_every must be >= 0"));
}

TEST_CASE("preview_vae_tiny decodes the previews with TAESD while the VAE makes the image", "[unit][preview]") {
  const fs::path dir = taesd_sized_model("preview");
  sd::LoadOptions load;
  load.channels_last = false;
  auto plain = sd::Pipeline::load("random:" + dir.string(), load);
  load.preview_vae_tiny = taesd_dir().string();
  auto pipe = sd::Pipeline::load("random:" + dir.string(), load);
  CHECK(pipe.info().decoder == "AutoencoderKL");
  CHECK(pipe.info().preview_decoder == "AutoencoderTiny");
  CHECK(pipe.info().vae_parameters == plain.info().vae_parameters);

  sd::GenerateOptions opt = small_generation(64);
  opt.steps = 3;
  opt.scheduler = sd::SchedulerKind::kDDIM;
  opt.keep_step_latents = true;
  opt.preview_every = 1;
  std::vector<at::Tensor> previews;
  opt.on_step = [&](const sd::StepInfo& step) {
    if (step.preview.defined()) previews.push_back(step.preview.clone());
    return sd::StepAction::kContinue;
  };
  const auto result = pipe.generate("a lighthouse", opt);
  REQUIRE(previews.size() == 3);
  sd::AutoencoderTiny taesd = sd::load_autoencoder_tiny(taesd_dir(), false);
  taesd->eval();
  for (size_t i = 0; i < previews.size(); ++i) {
    REQUIRE(previews[i].sizes() == c10::IntArrayRef({1, 3, 64, 64}));
    const auto expected = image_of(result.step_latents[i], taesd->config.scaling_factor,
                                   [&](const at::Tensor& z) { return taesd->decode(z); });
    INFO("preview " << i << ": max abs error " << (previews[i] - expected).abs().max().item<double>());
    CHECK(torch::allclose(previews[i], expected, 0, 1e-5));
  }
  // The image is the model's VAE's, as without a preview decoder.
  opt.preview_every = 0;
  CHECK(torch::equal(result.images01, plain.generate("a lighthouse", opt).images01));

  // A preview TAESD must fit the model too: sd1_tiny's VAE scales by 2.
  CHECK_THROWS_WITH(sd::Pipeline::load(tiny_pipeline().string(), load), Catch::Contains("scales latents by 8"));
  fs::remove_all(dir);
}
