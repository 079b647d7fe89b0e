// CUDA graphs on a GPU (skipped without one, see main.cpp): a generation whose UNet replays a
// captured graph equals the eager one within fp32 rounding and says it replayed; the per-step
// timings (CUDA events) are there and positive.
#include <torch/torch.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <cstdio>

#include "golden.h"
#include "sd/pipeline.h"

namespace {

sd::GenerateResult generate_on_cuda(bool cuda_graphs) {
  sd::LoadOptions load;
  load.device = "cuda";
  load.cuda_graphs = cuda_graphs;
  auto pipe = sd::Pipeline::load((golden::dir() / "pipelines/sd1_tiny").string(), load);
  sd::GenerateOptions opt;
  opt.width = opt.height = 64;
  opt.steps = 4;
  opt.seed = 3;
  return pipe.generate("a red fox in the snow", opt);
}

}  // namespace

TEST_CASE("CUDA: a generation with CUDA graphs equals the eager one and reports the graph", "[cuda][graphs]") {
  const sd::GenerateResult eager = generate_on_cuda(false);
  const sd::GenerateResult graphed = generate_on_cuda(true);
  CHECK_FALSE(eager.cuda_graph);
  CHECK(graphed.cuda_graph);
  const auto a = eager.latents.cpu(), b = graphed.latents.cpu();
  const double max_abs = (a - b).abs().max().item<double>();
  std::printf("CUDA graphs vs eager: max |latents difference| %.3g\n", max_abs);
  CHECK(max_abs <= 1e-5 * std::max(1.0, a.abs().max().item<double>()));
  REQUIRE(graphed.timings.unet_s.size() == eager.timings.unet_s.size());
  for (double s : graphed.timings.unet_s) CHECK(s > 0);
  for (double s : graphed.timings.scheduler_s) CHECK(s > 0);
}
