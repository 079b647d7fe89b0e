// Pipeline::estimate_memory (issue 18): the estimate generate() refuses by, readable before a
// request runs. It must be the very number generate() compares with its limit, count every image of
// a batched request, and list only the stages the request runs.
#include <torch/torch.h>

#include <catch2/catch.hpp>

#include "golden.h"
#include "models/configs.h"
#include "pipeline/memory_estimate.h"
#include "sd/error.h"
#include "sd/pipeline.h"

namespace {

std::string tiny_model() { return (golden::dir() / "pipelines/sd1_tiny").string(); }

sd::GenerateOptions estimate_request() {
  sd::GenerateOptions opt;
  opt.width = opt.height = 64;
  opt.steps = 2;
  opt.seed = 3;
  return opt;
}

sd::Pipeline load_with_limit(int64_t limit) {
  sd::LoadOptions load;
  load.memory_limit = limit;
  return sd::Pipeline::load(tiny_model(), load);
}

std::vector<std::string> stage_names(const sd::MemoryEstimate& estimate) {
  std::vector<std::string> names;
  for (const auto& stage : estimate.stages) names.push_back(stage.name);
  return names;
}

bool refused(sd::Pipeline& pipe, const sd::GenerateOptions& opt) {
  try {
    pipe.generate("a fox", opt);
    return false;
  } catch (const sd::Error& e) {
    INFO(e.what());
    CHECK_THAT(e.what(), Catch::StartsWith("out of memory (estimated before running)"));
    return true;
  }
}

}  // namespace

TEST_CASE("estimate_memory is the number generate() refuses by", "[unit][memory]") {
  const auto opt = estimate_request();
  const auto estimate = load_with_limit(-1).estimate_memory(opt);
  REQUIRE(estimate.peak_bytes > 0);
  CHECK(estimate.limit_bytes == 0);  // memory_limit = -1: no check
  auto at_limit = load_with_limit(estimate.peak_bytes);
  CHECK(at_limit.estimate_memory(opt).limit_bytes == estimate.peak_bytes);
  CHECK_FALSE(refused(at_limit, opt));
  auto below = load_with_limit(estimate.peak_bytes - 1);
  CHECK(refused(below, opt));
  // The default limit is the memory available now, on the CPU.
  CHECK(load_with_limit(0).estimate_memory(opt).limit_bytes > 0);
}

TEST_CASE("estimate_memory lists the stages a request runs, the largest as its peak", "[unit][memory]") {
  sd::LoadOptions load;
  load.vae_encoder = true;
  auto pipe = sd::Pipeline::load(tiny_model(), load);
  auto opt = estimate_request();
  const auto full = pipe.estimate_memory(opt);
  CHECK(stage_names(full) == std::vector<std::string>{"the UNet", "the VAE decode"});
  int64_t largest = 0;
  for (const auto& stage : full.stages) largest = std::max(largest, stage.bytes);
  CHECK(full.peak_bytes == largest);

  opt.decode = false;
  CHECK(stage_names(pipe.estimate_memory(opt)) == std::vector<std::string>{"the UNet"});
  opt.decode = true;
  sd::Image image;
  image.width = image.height = 64;
  image.rgb.assign(64 * 64 * 3, 100);
  opt.init_image = image;
  CHECK(stage_names(pipe.estimate_memory(opt)) ==
        std::vector<std::string>{"the UNet", "the VAE decode", "the VAE encode"});
  // (With the tiny autoencoder no VAE stage is estimated: tests/test_bench.cpp's TAESD rows.)
}

TEST_CASE("estimate_memory scales with the batch, the guidance and the size", "[unit][memory]") {
  auto pipe = load_with_limit(-1);
  auto unet_bytes = [&](const sd::GenerateOptions& opt) { return pipe.estimate_memory(opt).stages.at(0).bytes; };
  auto opt = estimate_request();
  const int64_t one = unet_bytes(opt);
  opt.batch = 3;
  CHECK(static_cast<double>(unet_bytes(opt)) == Approx(3.0 * static_cast<double>(one)));
  opt.batch = 1;
  opt.guidance_scale = 1.0;  // no guidance: half the UNet's batch
  CHECK(2.0 * static_cast<double>(unet_bytes(opt)) == Approx(static_cast<double>(one)));
  opt.guidance_scale = 7.5;
  opt.width = opt.height = 128;
  CHECK(unet_bytes(opt) >= 4 * one);  // four times the pixels, and more for attention's scores if held
  // The size resolved as generate() resolves it: 0 is the model's default.
  opt.width = opt.height = 0;
  const auto& info = pipe.info();
  auto explicit_default = estimate_request();
  explicit_default.width = static_cast<int>(info.default_width);
  explicit_default.height = static_cast<int>(info.default_height);
  CHECK(pipe.estimate_memory(opt).peak_bytes == pipe.estimate_memory(explicit_default).peak_bytes);
  opt.batch = 0;
  CHECK_THROWS_WITH(pipe.estimate_memory(opt), Catch::Contains("batch must be at least 1"));
}

TEST_CASE("generate_batch is estimated for all of its prompts, not one", "[unit][memory]") {
  const auto opt = estimate_request();
  auto three = opt;
  three.batch = 3;
  const auto unchecked = load_with_limit(-1);
  const int64_t one_image = unchecked.estimate_memory(opt).peak_bytes;
  const int64_t three_images = unchecked.estimate_memory(three).peak_bytes;
  REQUIRE(three_images > one_image);
  // A limit that one image fits and three do not.
  auto pipe = load_with_limit((one_image + three_images) / 2);
  CHECK_FALSE(refused(pipe, opt));
  const std::vector<sd::BatchPrompt> items{{"a fox", "", 1}, {"a cat", "", 2}, {"a dog", "", 3}};
  auto shared = opt;
  shared.seed = 0;  // the items have their own
  bool batch_refused = false;
  try {
    pipe.generate_batch(items, shared);
  } catch (const sd::Error& e) {
    batch_refused = true;
    CHECK_THAT(e.what(), Catch::Contains("generation of batch 3"));
  }
  CHECK(batch_refused);
}

TEST_CASE("the UNet estimate of SD 1.5 at 512x512 is the hand count of its model", "[unit][memory]") {
  sd::UNetConfig sd15;  // the defaults are SD 1.5's, less the heads, which its config file gives
  sd15.num_heads = {8, 8, 8, 8};
  // Per image, in elements: the skips (conv_in; two resnets per level; three downsamplers) ...
  const int64_t skips = 320 * 4096 + 2 * 320 * 4096 + 320 * 1024 + 2 * 640 * 1024 + 640 * 256 + 2 * 1280 * 256 +
                        1280 * 64 + 2 * 1280 * 64;
  // ... and the widest working set, the first level's GEGLU feed-forward (~20 C), as the fused CPU
  // attention holds no score matrix.
  const int64_t working = 20 * 320 * 4096;
  const int64_t tensors = (skips + working) * 4 * 2;  // fp32, the guided batch of 2
  CHECK(sd::estimate_unet_peak_bytes(sd15, 2, 64, 64, torch::kFloat, {}) == tensors);
  sd::ActivationMemoryOptions cpu;
  cpu.overhead = sd::kCpuUNetOverhead;
  CHECK(static_cast<double>(sd::estimate_unet_peak_bytes(sd15, 2, 64, 64, torch::kFloat, cpu)) ==
        Approx(1.25 * static_cast<double>(tensors)));
  // Materialized scores at the first level: 8 heads x 4096 x 4096, twice in fp32 and once in fp32.
  sd::ActivationMemoryOptions scores;
  scores.attention_scores = true;
  const int64_t with_scores = (skips + 6 * 320 * 4096 + 8LL * 4096 * 4096 * 3) * 4 * 2;
  CHECK(sd::estimate_unet_peak_bytes(sd15, 2, 64, 64, torch::kFloat, scores) == with_scores);
}
