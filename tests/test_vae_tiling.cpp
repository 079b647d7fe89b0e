// VAE tiling: AutoencoderKL decode/encode with diffusers 0.27.2's enable_tiling() against data
// diffusers recorded on a tiny VAE (tests/data/vae, written by tests/reference/make_vae_cases.py,
// which says how to rerun it): sample_size 32 and 2 levels, so tiling engages from 64 px. Also the
// tiling condition, the geometry, the blending arithmetic and the decode memory model.
#include <torch/torch.h>
#include <torch/version.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bind_file.h"
#include "golden.h"
#include "models/configs.h"
#include "models/vae.h"
#include "models/vae_tiling.h"
#include "sd/error.h"
#include "sd/safetensors.h"
#include "vae_ref.h"

namespace {

namespace fs = std::filesystem;

fs::path vae_data() { return vae_ref::dir(); }
const nlohmann::json& vae_manifest() { return vae_ref::manifest(); }
using vae_ref::case_tensors;

sd::AutoencoderKL tiny_kl() {
  const auto dir = vae_data() / "vae_kl";
  sd::AutoencoderKL vae(sd::VAEConfig::from_file(dir / "config.json"));
  golden::bind_file(vae, dir / "diffusion_pytorch_model.safetensors");
  return vae;
}

std::vector<int64_t> plan_of(const sd::TileGeometry& g) { return {g.tile, g.stride, g.blend, g.keep}; }
std::vector<int64_t> plan_of(const nlohmann::json& j) {
  return {j["tile"].get<int64_t>(), j["stride"].get<int64_t>(), j["blend"].get<int64_t>(), j["keep"].get<int64_t>()};
}

int64_t tiles_along(int64_t length, int64_t stride) { return (length + stride - 1) / stride; }

sd::VAEConfig sd15_vae() { return sd::VAEConfig{}; }  // the member defaults are SD 1.5's VAE

// diffusers' blend_v written as its Python loop: one row at a time, Python float weights.
torch::Tensor literal_blend_v(const torch::Tensor& a, torch::Tensor b, int64_t extent) {
  extent = std::min({a.size(2), b.size(2), extent});
  for (int64_t y = 0; y < extent; ++y) {
    const double w = static_cast<double>(y) / static_cast<double>(extent);
    b.select(2, y).copy_(a.select(2, a.size(2) - extent + y) * (1 - w) + b.select(2, y) * w);
  }
  return b;
}

torch::Tensor literal_blend_h(const torch::Tensor& a, torch::Tensor b, int64_t extent) {
  extent = std::min({a.size(3), b.size(3), extent});
  for (int64_t x = 0; x < extent; ++x) {
    const double w = static_cast<double>(x) / static_cast<double>(extent);
    b.select(3, x).copy_(a.select(3, a.size(3) - extent + x) * (1 - w) + b.select(3, x) * w);
  }
  return b;
}

}  // namespace

TEST_CASE("VAE tiling engages where diffusers' does, with its geometry", "[unit][vae-tiling]") {
  // SD 1.5's VAE (sample_size 512, factor 8): diffusers' tile_latent_min_size 64, overlap_size 48,
  // blend_extent 128, row_limit 384 for decode; 512, 384, 16, 48 for encode.
  const auto sd15 = sd15_vae();
  CHECK(plan_of(sd::decode_tile_geometry(sd15)) == std::vector<int64_t>{64, 48, 128, 384});
  CHECK(plan_of(sd::encode_tile_geometry(sd15)) == std::vector<int64_t>{512, 384, 16, 48});
  CHECK_FALSE(sd::decode_tiling_applies(sd15, {1, 4, 64, 64}));  // 512x512: exactly one tile, not tiled
  CHECK(sd::decode_tiling_applies(sd15, {1, 4, 64, 65}));        // either side over the tile tiles
  CHECK(sd::decode_tiling_applies(sd15, {1, 4, 65, 64}));
  CHECK_FALSE(sd::encode_tiling_applies(sd15, {1, 3, 512, 512}));
  CHECK(sd::encode_tiling_applies(sd15, {1, 3, 520, 512}));
  CHECK(sd::encode_tiling_applies(sd15, {1, 3, 512, 520}));

  // The tiny test VAE: sample_size 32, factor 2.
  const auto tiny = sd::VAEConfig::from_file(vae_data() / "vae_kl/config.json");
  CHECK(plan_of(sd::decode_tile_geometry(tiny)) == std::vector<int64_t>{16, 12, 8, 24});
  CHECK(plan_of(sd::encode_tile_geometry(tiny)) == std::vector<int64_t>{32, 24, 4, 12});

  // A sample_size too small to give a stride is an error, not an endless loop.
  sd::VAEConfig small = sd15;
  small.sample_size = 8;  // latent tile 1: stride int(0.75) = 0
  CHECK_THROWS_AS(sd::decode_tile_geometry(small), sd::Error);
}

TEST_CASE("VAE tile blending gives diffusers' values bit for bit", "[unit][vae-tiling]") {
  c10::InferenceMode guard;
  auto gen = at::detail::createCPUGenerator(17);
  std::vector<torch::ScalarType> dtypes{torch::kFloat, torch::kDouble};
#if TORCH_VERSION_MAJOR >= 2
  // LibTorch 2.x applies a Python float to fp16/bf16 tensors in fp32 (opmath), as diffusers' torch
  // does; 1.13 rounded the scalar to the tensor's type first, so only 2.x is the reference here.
  dtypes.push_back(torch::kBFloat16);
  dtypes.push_back(torch::kHalf);
#endif
  for (auto dtype : dtypes) {
    INFO("dtype " << c10::toString(dtype));
    auto a = torch::randn({2, 3, 12, 10}, gen).to(dtype);
    auto b = torch::randn({2, 3, 9, 10}, gen).to(dtype);
    for (int64_t extent : {8, 12}) {  // 12: limited to b's 9 rows
      INFO("extent " << extent);
      auto expected = literal_blend_v(a, b.clone(), extent);
      auto actual = b.clone();
      sd::blend_rows(a, actual, extent);
      CHECK(torch::equal(actual, expected));
      CHECK_FALSE(torch::equal(actual, b));  // it did blend
    }
    auto c = torch::randn({2, 3, 9, 7}, gen).to(dtype);
    auto d = torch::randn({2, 3, 9, 5}, gen).to(dtype);
    auto expected = literal_blend_h(c, d.clone(), 4);
    auto actual = d.clone();
    sd::blend_columns(c, actual, 4);
    CHECK(torch::equal(actual, expected));
    // Only the first 4 columns change.
    CHECK(torch::equal(actual.narrow(3, 4, 1), d.narrow(3, 4, 1)));
  }
}

TEST_CASE("VAE tiled decode matches diffusers' enable_tiling() decode", "[parity][vae-tiling]") {
  c10::InferenceMode guard;
  auto vae = tiny_kl();
  const auto cases = golden::cases_of_kind_in(vae_manifest(), "vae_tiled_decode");
  REQUIRE(cases.size() == 2u);
  for (const auto& c : cases) {
    INFO(c["name"].get<std::string>());
    auto ref = case_tensors(c);
    const auto& z = ref.at("latents");
    const auto g = sd::decode_tile_geometry(vae->config);
    CHECK(plan_of(g) == plan_of(c["geometry"]));
    CHECK(std::vector<int64_t>{tiles_along(z.size(2), g.stride), tiles_along(z.size(3), g.stride)} ==
          c["tiles"].get<std::vector<int64_t>>());
    REQUIRE(sd::decode_tiling_applies(vae->config, z.sizes()));
    auto out = sd::tiled_decode(*vae, z);
    CHECK_CLOSE_TO_GOLDEN(out, ref.at("image"), golden::tolerance_of(c));
    // decode with tiling enabled takes the tiled path here: the same tensor.
    CHECK(torch::equal(sd::decode_maybe_tiled(*vae, z), out));
    // and it is not the untiled decode (the sensitivity the reference recorded)
    const double untiled_diff = (vae->decode(z) - out).abs().max().item<double>();
    CHECK(untiled_diff > 10 * golden::tolerance_of(c).atol);
  }
}

TEST_CASE("VAE tiled decode and encode match diffusers with channels-last weights and inputs", "[parity][vae-tiling]") {
  // What the pipeline runs on CPU by default (LoadOptions::channels_last).
  c10::InferenceMode guard;
  auto vae = tiny_kl();
  for (auto& p : vae->parameters()) {
    if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
  }
  const auto& dc = golden::find_case_in(vae_manifest(), "cases/kl_tiled_decode_96x128");
  auto dref = case_tensors(dc);
  auto out = sd::tiled_decode(*vae, dref.at("latents").contiguous(torch::MemoryFormat::ChannelsLast));
  CHECK_CLOSE_TO_GOLDEN(out, dref.at("image"), golden::tolerance_of(dc));
  const auto& ec = golden::find_case_in(vae_manifest(), "cases/kl_tiled_encode_128x96");
  auto eref = case_tensors(ec);
  auto d = sd::tiled_encode(*vae, eref.at("image").contiguous(torch::MemoryFormat::ChannelsLast));
  CHECK_CLOSE_TO_GOLDEN(d.mean, eref.at("mean"), golden::tolerance_of(ec));
  CHECK_CLOSE_TO_GOLDEN(d.logvar, eref.at("logvar"), golden::tolerance_of(ec));
}

TEST_CASE("VAE untiled decode of the tiling latents matches diffusers, and differs from the tiled one",
          "[parity][vae-tiling]") {
  c10::InferenceMode guard;
  auto vae = tiny_kl();
  const auto& untiled = golden::find_case_in(vae_manifest(), "cases/kl_untiled_decode_b2_64x64");
  const auto& tiled = golden::find_case_in(vae_manifest(), "cases/kl_tiled_decode_b2_64x64");
  auto ref = case_tensors(untiled);
  auto ref_tiled = case_tensors(tiled);
  REQUIRE(torch::equal(ref.at("latents"), ref_tiled.at("latents")));
  CHECK_CLOSE_TO_GOLDEN(vae->decode(ref.at("latents")), ref.at("image"), golden::tolerance_of(untiled));
  const auto cmp = golden::compare(ref_tiled.at("image"), ref.at("image"), golden::tolerance_of(untiled));
  INFO("tiled vs untiled reference: " << cmp.describe());
  CHECK_FALSE(cmp.ok);
}

TEST_CASE("VAE tiled encode matches diffusers' enable_tiling() encode", "[parity][vae-tiling]") {
  c10::InferenceMode guard;
  auto vae = tiny_kl();
  const auto cases = golden::cases_of_kind_in(vae_manifest(), "vae_tiled_encode");
  REQUIRE(cases.size() == 2u);
  for (const auto& c : cases) {
    INFO(c["name"].get<std::string>());
    auto ref = case_tensors(c);
    const auto& image = ref.at("image");
    const auto g = sd::encode_tile_geometry(vae->config);
    CHECK(plan_of(g) == plan_of(c["geometry"]));
    CHECK(std::vector<int64_t>{tiles_along(image.size(2), g.stride), tiles_along(image.size(3), g.stride)} ==
          c["tiles"].get<std::vector<int64_t>>());
    REQUIRE(sd::encode_tiling_applies(vae->config, image.sizes()));
    auto d = sd::tiled_encode(*vae, image);
    const auto tol = golden::tolerance_of(c);
    CHECK_CLOSE_TO_GOLDEN(d.mean, ref.at("mean"), tol);
    CHECK_CLOSE_TO_GOLDEN(d.logvar, ref.at("logvar"), tol);
    CHECK(torch::allclose(d.std, torch::exp(0.5 * d.logvar)));
    auto maybe = sd::encode_maybe_tiled(*vae, image);
    CHECK(torch::equal(maybe.mean, d.mean));
    const double untiled_diff = (vae->encode(image).mean - d.mean).abs().max().item<double>();
    CHECK(untiled_diff > 10 * tol.atol);
  }
}

TEST_CASE("VAE tiling falls back to the plain decode/encode below the tile size", "[unit][vae-tiling]") {
  c10::InferenceMode guard;
  auto vae = tiny_kl();
  auto gen = at::detail::createCPUGenerator(5);
  auto z = torch::randn({1, 4, 16, 12}, gen);  // within the 16-px latent tile
  REQUIRE_FALSE(sd::decode_tiling_applies(vae->config, z.sizes()));
  CHECK(torch::equal(sd::decode_maybe_tiled(*vae, z), vae->decode(z)));
  auto image = torch::rand({1, 3, 32, 20}, gen) * 2 - 1;
  REQUIRE_FALSE(sd::encode_tiling_applies(vae->config, image.sizes()));
  CHECK(torch::equal(sd::encode_maybe_tiled(*vae, image).mean, vae->encode(image).mean));
  // tiled_decode itself always tiles (as diffusers' does when called directly): rows start at 0
  // and 12, so the output is blended, not the plain decode, but has its size.
  auto forced = sd::tiled_decode(*vae, z);
  CHECK(forced.sizes() == vae->decode(z).sizes());
  CHECK_FALSE(torch::equal(forced, vae->decode(z)));
}

TEST_CASE("VAE decode memory estimate scales with batch, area and element size", "[unit][vae-tiling]") {
  const auto c = sd15_vae();
  sd::DecodeMemoryOptions fused;
  fused.attention_scores = false;
  const auto est = [&](std::vector<int64_t> shape, torch::ScalarType dtype, const sd::DecodeMemoryOptions& o) {
    return sd::estimate_decode_peak_bytes(c, shape, dtype, o);
  };
  const int64_t base = est({1, 4, 64, 64}, torch::kFloat, fused);
  // SD 1.5 at 512x512 in fp32: the widest stage is up block 3's first resnet (256 -> 128 channels
  // at 512x512): input, norm, conv1, conv2 = (2 * 256 + 2 * 128) * 512^2 * 4 bytes.
  CHECK(base == int64_t{(2 * 256 + 2 * 128)} * 512 * 512 * 4);
  CHECK(est({2, 4, 64, 64}, torch::kFloat, fused) == 2 * base);
  CHECK(est({1, 4, 128, 128}, torch::kFloat, fused) == 4 * base);
  CHECK(est({1, 4, 64, 64}, torch::kBFloat16, fused) * 2 == base);
  CHECK(est({1, 4, 64, 72}, torch::kFloat, fused) > base);
  CHECK(est({1, 4, 72, 64}, torch::kFloat, fused) > base);

  // Held attention scores grow with the square of the area: at 2048x2048 (256^2 latents) the
  // [65536, 65536] fp32 scores and softmax alone are 32 GiB; slicing the queries bounds them.
  const sd::DecodeMemoryOptions held;
  const int64_t big_held = est({1, 4, 256, 256}, torch::kFloat, held);
  CHECK(big_held > int64_t{32} * 1024 * 1024 * 1024);
  CHECK(big_held > 16 * est({1, 4, 64, 64}, torch::kFloat, held));
  sd::DecodeMemoryOptions sliced;
  sliced.query_slice = 1024;
  const int64_t big_sliced = est({1, 4, 256, 256}, torch::kFloat, sliced);
  CHECK(big_sliced < big_held);
  CHECK(big_sliced >= est({1, 4, 256, 256}, torch::kFloat, fused));
  CHECK(est({1, 4, 64, 64}, torch::kFloat, held) >= base);

  // Tiled: bounded by one tile's decode plus the kept tiles and the output, far below untiled.
  const int64_t tiled = sd::estimate_tiled_decode_peak_bytes(c, {1, 4, 256, 256}, torch::kBFloat16, fused);
  CHECK(tiled < est({1, 4, 256, 256}, torch::kBFloat16, fused) / 4);
  CHECK(tiled > est({1, 4, 64, 64}, torch::kBFloat16, fused));
  // 2048x2048 bf16 tiled: within the 4 GB goal by this model.
  CHECK(tiled < int64_t{4} * 1000 * 1000 * 1000);
  CHECK_THROWS_AS(est({4, 64, 64}, torch::kFloat, fused), sd::Error);
}
