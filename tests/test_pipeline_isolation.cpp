// Per-pipeline settings stay per pipeline: two pipelines with different threads, attention slicing
// and precision give bit-identical images alone, after the other was loaded, and both at once from
// two threads. (Before, loading a second pipeline changed the first one's images.)
#include <torch/torch.h>

#include <catch2/catch.hpp>
#include <thread>

#include "golden.h"
#include "sd/pipeline.h"

namespace {

std::string tiny_pipeline() { return (golden::dir() / "pipelines/sd1_tiny").string(); }

sd::GenerateOptions small_generation() {
  sd::GenerateOptions opt;
  opt.width = opt.height = 64;
  opt.steps = 4;
  opt.seed = 11;
  return opt;
}

sd::LoadOptions settings_a() {
  sd::LoadOptions load;
  load.threads = 1;
  return load;
}

sd::LoadOptions settings_b() {
  sd::LoadOptions load;
  load.threads = 2;
  load.attention_slice = 16;
  load.precision = sd::Precision::kBF16;
  load.flush_denormals = false;
  return load;
}

bool same(const at::Tensor& a, const at::Tensor& b) { return a.sizes() == b.sizes() && torch::equal(a, b); }

}  // namespace

TEST_CASE("Two pipelines with different settings never change each other's images", "[unit][pipeline][isolation]") {
  const auto opt = small_generation();
  at::Tensor alone_a, alone_b;
  {
    auto a = sd::Pipeline::load(tiny_pipeline(), settings_a());
    alone_a = a.generate("a lighthouse", opt).images01;
  }
  {
    auto b = sd::Pipeline::load(tiny_pipeline(), settings_b());
    alone_b = b.generate("a lighthouse", opt).images01;
  }
  REQUIRE(alone_a.defined());
  REQUIRE(alone_b.defined());
  CHECK_FALSE(same(alone_a, alone_b));  // the settings really differ (bf16 vs fp32)

  // Both loaded, each used after the other was loaded, in both orders.
  auto a = sd::Pipeline::load(tiny_pipeline(), settings_a());
  auto b = sd::Pipeline::load(tiny_pipeline(), settings_b());
  CHECK(same(a.generate("a lighthouse", opt).images01, alone_a));
  CHECK(same(b.generate("a lighthouse", opt).images01, alone_b));
  CHECK(same(a.generate("a lighthouse", opt).images01, alone_a));

  // Both at once, from two threads, a few times over.
  for (int round = 0; round < 3; ++round) {
    INFO("round " << round);
    at::Tensor concurrent_a, concurrent_b;
    std::thread ta([&] { concurrent_a = a.generate("a lighthouse", opt).images01; });
    std::thread tb([&] { concurrent_b = b.generate("a lighthouse", opt).images01; });
    ta.join();
    tb.join();
    CHECK(same(concurrent_a, alone_a));
    CHECK(same(concurrent_b, alone_b));
  }
  // The calling thread's settings are as they were: a pipeline call restores what it changed.
  const int threads_before = at::get_num_threads();
  a.generate("a lighthouse", opt);
  CHECK(at::get_num_threads() == threads_before);
}

TEST_CASE("random: weights come from their own generator and leave the global one alone", "[unit][pipeline]") {
  sd::LoadOptions load;
  load.random_seed = 5;
  const std::string model = "random:" + tiny_pipeline();
  torch::manual_seed(123);
  const auto expected_next = torch::rand({4});
  torch::manual_seed(123);
  auto first = sd::Pipeline::load(model, load);
  CHECK(torch::equal(torch::rand({4}), expected_next));  // the global generator did not move
  torch::manual_seed(999);                               // and its state does not matter
  auto second = sd::Pipeline::load(model, load);
  auto opt = small_generation();
  opt.decode = false;
  CHECK(torch::equal(first.generate("x", opt).latents, second.generate("x", opt).latents));
  load.random_seed = 6;
  auto other = sd::Pipeline::load(model, load);
  CHECK_FALSE(torch::equal(other.generate("x", opt).latents, first.generate("x", opt).latents));
}
