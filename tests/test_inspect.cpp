// sd/inspect.h and sd/flops.h: what a model holds against what its configs build, and the
// analytic FLOP counts (bench_latency's TFLOP/s) from the library's own configs.
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "golden.h"
#include "inspect/flops.h"
#include "models/configs.h"
#include "sd/error.h"
#include "sd/flops.h"
#include "sd/inspect.h"
#include "sd/safetensors.h"

namespace {
namespace fs = std::filesystem;

fs::path tiny() { return golden::dir() / "pipelines/sd1_tiny"; }

// A copy of the tiny pipeline folder, removed afterwards; the UNet's weights file left to the test.
struct TinyCopy {
  fs::path dir;
  TinyCopy() : dir(fs::temp_directory_path() / ("libsd-inspect-" + std::to_string(::getpid()))) {
    fs::remove_all(dir);
    fs::copy(tiny(), dir, fs::copy_options::recursive);
    fs::remove(dir / "unet/diffusion_pytorch_model.safetensors");
  }
  ~TinyCopy() { fs::remove_all(dir); }
  fs::path unet(const std::string& name) const { return dir / "unet" / name; }
};

const sd::ComponentReport& component(const sd::InspectReport& report, const std::string& name) {
  for (const auto& c : report.components) {
    if (c.name == name) return c;
  }
  FAIL("no component " << name);
  throw std::logic_error("unreachable");
}

}  // namespace

TEST_CASE("model_flops: SD 1.5 at 512x512 is 803.3 GFLOP per UNet evaluation", "[unit][flops]") {
  // The porting notes' numbers (docs/benchmarks.md): conv 443.9, linear 233.3, attention 126.1;
  // the VAE decode 2514.5 GFLOP.
  const sd::ModelFlops f = sd::model_flops("random:sd-v1-5", 1, /*guidance=*/false, 512, 512);
  CHECK(f.unet_batch == 1);
  CHECK(f.latent_height == 64);
  CHECK(f.latent_width == 64);
  CHECK(f.context_tokens == 77);
  CHECK(f.unet.total() / 1e9 == Approx(803.3).margin(0.05));
  CHECK(f.unet.conv / 1e9 == Approx(443.9).margin(0.05));
  CHECK(f.unet.linear / 1e9 == Approx(233.3).margin(0.05));
  CHECK(f.unet.attention / 1e9 == Approx(126.1).margin(0.05));
  CHECK(f.vae_decode.total() / 1e9 == Approx(2514.5).margin(0.05));

  // Guidance doubles the UNet's batch, not the decode's; 0x0 is the model's default size (512).
  const sd::ModelFlops g = sd::model_flops("random:sd-v1-5", 1, /*guidance=*/true);
  CHECK(g.unet_batch == 2);
  CHECK(g.latent_height == 64);
  CHECK(g.unet.total() == Approx(2 * f.unet.total()));
  CHECK(g.vae_decode.total() == Approx(f.vae_decode.total()));
  CHECK(sd::model_flops("random:sd-v1-5", 3, false, 512, 512).vae_decode.total() ==
        Approx(3 * f.vae_decode.total()));

  // A diffusers folder reads its own configs.
  const sd::ModelFlops t = sd::model_flops(tiny().string(), 1, false);
  CHECK(t.unet.total() > 0);
  CHECK(t.unet.total() < f.unet.total() / 100);
  CHECK_THROWS_AS(sd::model_flops("random:sd-v1-5", 0, false), sd::Error);
  CHECK_THROWS_AS(sd::model_flops("/nonexistent/model", 1, false), sd::Error);
}

TEST_CASE("unet_flops: a linear projection moves the projections' FLOPs from conv to linear",
          "[unit][flops]") {
  sd::UNetConfig conv;  // SD 1.5's defaults
  conv.transformer_layers_per_block = {1, 1, 1, 1};
  sd::UNetConfig linear = conv;
  linear.use_linear_projection = true;  // SD 2.x
  const sd::FlopCount a = sd::unet_flops(conv, 1, 64, 64, 77);
  const sd::FlopCount b = sd::unet_flops(linear, 1, 64, 64, 77);
  CHECK(a.total() / 1e9 == Approx(803.3).margin(0.05));
  CHECK(b.total() == Approx(a.total()));
  CHECK(b.conv < a.conv);
  CHECK(b.linear - a.linear == Approx(a.conv - b.conv));
  CHECK(a.attention == b.attention);
  // Two transformer layers per block: more of everything but the convolutions.
  sd::UNetConfig deep = conv;
  deep.transformer_layers_per_block = {2, 2, 2, 2};
  const sd::FlopCount d = sd::unet_flops(deep, 1, 64, 64, 77);
  CHECK(d.attention == Approx(2 * a.attention));
  CHECK(d.conv == Approx(a.conv));
}

TEST_CASE("inspect_model: a diffusers folder against the models its configs build", "[unit][inspect]") {
  SECTION("the tiny pipeline matches its configs") {
    sd::InspectOptions options;
    options.compare_keys = true;
    const auto report = sd::inspect_model(tiny().string(), options);
    CHECK(report.format == "diffusers");
    CHECK(report.config_dir == tiny());
    REQUIRE(report.components.size() == 3);
    CHECK(report.differences() == 0);
    for (const auto& c : report.components) {
      INFO(c.name);
      REQUIRE(c.keys);
      CHECK(c.keys->expected > 0);
      CHECK(c.model_parameters > 0);
      CHECK(c.parameters >= c.model_parameters);  // the text encoder's file also holds position_ids
      CHECK(!c.tensors.empty());
      CHECK(std::is_sorted(c.tensors.begin(), c.tensors.end(),
                           [](const auto& a, const auto& b) { return a.name < b.name; }));
    }
    CHECK(component(report, "unet").source == (tiny() / "unet/diffusion_pytorch_model.safetensors").string());
  }
  SECTION("without compare_keys nothing is built") {
    const auto report = sd::inspect_model(tiny().string());
    REQUIRE(report.components.size() == 3);
    for (const auto& c : report.components) {
      CHECK_FALSE(c.keys);
      CHECK(c.model_parameters == 0);
    }
  }
}

TEST_CASE("inspect_model finds weight files as Pipeline::load does", "[unit][inspect]") {
  TinyCopy copy;
  const sd::StateDict unet = sd::load_safetensors(tiny() / "unet/diffusion_pytorch_model.safetensors");
  sd::InspectOptions options;
  options.compare_keys = true;

  SECTION("a pickle file where the weights should be is refused by name") {
    std::ofstream(copy.unet("diffusion_pytorch_model.bin")) << "not really a pickle";
    try {
      sd::inspect_model(copy.dir.string(), options);
      FAIL("a pickle-only UNet folder was inspected");
    } catch (const sd::Error& e) {
      CHECK_THAT(e.what(), Catch::Contains("diffusion_pytorch_model.bin") && Catch::Contains("pickle"));
    }
  }
  SECTION("the fp16 variant, and what differs from the model, sorted by name") {
    sd::StateDict changed = unet;
    const std::string dropped = changed.begin()->first;
    changed.erase(changed.begin());
    const std::string reshaped = changed.rbegin()->first;
    changed[reshaped] = torch::zeros({3, 5});
    changed["extra.weight"] = torch::zeros({2});
    sd::save_safetensors(copy.unet("diffusion_pytorch_model.fp16.safetensors"), changed);
    sd::save_safetensors(copy.unet("diffusion_pytorch_model.other.safetensors"), unet);

    options.variant = "fp16";
    const auto report = sd::inspect_model(copy.dir.string(), options);
    const auto& u = component(report, "unet");
    CHECK(u.source == copy.unet("diffusion_pytorch_model.fp16.safetensors").string());
    REQUIRE(u.keys);
    REQUIRE(u.keys->missing.size() == 1);
    CHECK(u.keys->missing[0].name == dropped);
    REQUIRE(u.keys->unexpected.size() == 1);
    CHECK(u.keys->unexpected[0].name == "extra.weight");
    REQUIRE(u.keys->mismatched.size() == 1);
    CHECK(u.keys->mismatched[0].name == reshaped);
    CHECK(u.keys->mismatched[0].file_shape == std::vector<int64_t>{3, 5});
    CHECK(report.differences() == 3);

    options.variant = "other";
    CHECK(sd::inspect_model(copy.dir.string(), options).differences() == 0);
  }
}

TEST_CASE("inspect_model: random weights and plain safetensors files", "[unit][inspect]") {
  SECTION("random: the configs' parameter counts") {
    const auto report = sd::inspect_model("random:" + tiny().string());
    CHECK(report.format == "random");
    REQUIRE(report.components.size() == 3);
    for (const auto& c : report.components) CHECK(c.model_parameters > 0);
  }
  SECTION("a file that is no checkpoint is described, not compared") {
    const fs::path file = tiny() / "vae/diffusion_pytorch_model.safetensors";
    sd::InspectOptions options;
    options.compare_keys = true;
    const auto report = sd::inspect_model(file.string(), options);
    CHECK(report.format == "safetensors");
    CHECK(report.components.empty());
    CHECK(report.file_size == fs::file_size(file));
    CHECK(report.file_tensors.size() == sd::SafetensorsFile(file).entries().size());
    CHECK(report.file_parameters > 0);
  }
}
