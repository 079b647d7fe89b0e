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
  // A model whose VAE scales by 8, like TAESD: sd1_tiny's configs with a 4-level VAE, random weights.
  const fs::path dir = fs::temp_directory_path() / ("libsd-taesd-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::copy(tiny_pipeline(), dir, fs::copy_options::recursive);
  auto vae_config = sd::read_json_file(dir / "vae/config.json");
  vae_config["block_out_channels"] = {32, 32, 32, 32};
  vae_config["down_block_types"] = std::vector<std::string>(4, "DownEncoderBlock2D");
  vae_config["up_block_types"] = std::vector<std::string>(4, "UpDecoderBlock2D");
  std::ofstream(dir / "vae/config.json") << vae_config.dump(2);

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
