// Hidden micro-benchmark: `sd_tests "[kernel-choice-bench]"` times each of libsd's own CPU kernels
// against what this LibTorch does without it, at SD 1.5's 512x512 shapes with CFG, so the choice
// of kernel can be made per LibTorch version by measurement (docs/performance.md has the table).
// The attention kernel has its own benchmark ("[attention-bench]", with LibTorch 2.x's SDPA).
#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#include "kernels/geglu.h"
#include "kernels/group_norm_silu.h"
#include "models/conv2d.h"

namespace {

double median_ms(const std::function<void()>& fn, int runs) {
  fn();  // warm-up (allocations, packing, caches)
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

const char* dtype_name(torch::ScalarType dtype) { return dtype == torch::kFloat ? "fp32" : "bf16"; }

void row(const char* kernel, const std::string& shape, torch::ScalarType dtype, double libtorch_ms, double ours_ms) {
  std::printf("%-16s %-22s %-5s %12.3f %10.3f %8.2fx\n", kernel, shape.c_str(), dtype_name(dtype), libtorch_ms, ours_ms,
              libtorch_ms / ours_ms);
  std::fflush(stdout);
}

}  // namespace

TEST_CASE("libsd's CPU kernels vs this LibTorch's own ops", "[.bench][kernel-choice-bench]") {
  const char* threads_env = std::getenv("SD_BENCH_THREADS");
  at::set_num_threads(threads_env ? std::max(1, std::atoi(threads_env)) : 2);
  c10::InferenceMode guard;
  at::manual_seed(0);
  std::printf("LibTorch %s, %d threads\n%-16s %-22s %-5s %12s %10s %9s\n", TORCH_VERSION, at::get_num_threads(),
              "kernel", "shape", "dtype", "libtorch ms", "libsd ms", "speedup");
  for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
    // GEGLU: the feed-forward's projection [2, N, 2 * 4C] -> a * gelu(b), at the 64x64 and 32x32 levels.
    for (auto shape : {std::vector<int64_t>{2, 4096, 2560}, std::vector<int64_t>{2, 1024, 5120}}) {
      const auto projected = torch::randn(shape).to(dtype);
      REQUIRE(sd::kernels::geglu_supported(projected));
      const double ops = median_ms(
          [&] {
            auto halves = projected.chunk(2, -1);
            halves[0] * torch::gelu(halves[1]);
          },
          9);
      const double fused = median_ms([&] { sd::kernels::geglu(projected); }, 9);
      auto halves = projected.chunk(2, -1);
      CHECK(torch::allclose(sd::kernels::geglu(projected).to(torch::kFloat),
                            (halves[0] * torch::gelu(halves[1])).to(torch::kFloat), 2e-2, 2e-2));
      row("geglu", c10::str(c10::IntArrayRef(shape)), dtype, ops, fused);
    }
    // GroupNorm + SiLU, channels-last: the UNet's 64x64 level, then the VAE decoder's levels.
    for (auto shape : {std::vector<int64_t>{2, 320, 64, 64}, std::vector<int64_t>{1, 512, 64, 64},
                       std::vector<int64_t>{1, 512, 128, 128}, std::vector<int64_t>{1, 256, 256, 256},
                       std::vector<int64_t>{1, 128, 512, 512}}) {
      const auto x = torch::randn(shape).to(dtype).contiguous(torch::MemoryFormat::ChannelsLast);
      const auto w = torch::randn({shape[1]}).to(dtype), b = torch::randn({shape[1]}).to(dtype);
      REQUIRE(sd::kernels::group_norm_silu_supported(x, 32, w, b));
      const double ops = median_ms(
          [&] {
            auto y = torch::group_norm(x, 32, w, b, 1e-5);
            torch::silu_(y);
          },
          5);
      const double fused = median_ms([&] { sd::kernels::group_norm_silu(x, 32, w, b, 1e-5); }, 5);
      row("group_norm_silu", c10::str(c10::IntArrayRef(shape)), dtype, ops, fused);
    }
    // Convolutions with the weight pre-packed for oneDNN vs reordered at every call (3x3, the
    // UNet's two smallest levels).
    if (sd::conv_prepacking_available()) {
      for (auto shape : {std::vector<int64_t>{2, 1280, 8, 8}, std::vector<int64_t>{2, 1280, 16, 16}}) {
        sd::Conv2d conv(torch::nn::Conv2dOptions(shape[1], shape[1], 3).padding(1));
        conv->to(dtype);
        for (auto& p : conv->parameters()) {
          if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
        }
        const auto x = torch::randn(shape).to(dtype).contiguous(torch::MemoryFormat::ChannelsLast);
        conv->prepack_max_pixels = 0;
        const double plain = median_ms([&] { conv->forward(x); }, 9);
        const auto reference = conv->forward(x);
        conv->prepack_max_pixels = shape[0] * shape[2] * shape[3];
        const double packed = median_ms([&] { conv->forward(x); }, 9);
        CHECK(conv->packed());
        CHECK(torch::allclose(conv->forward(x).to(torch::kFloat), reference.to(torch::kFloat), 2e-2, 2e-2));
        row("conv3x3 packed", c10::str(c10::IntArrayRef(shape)), dtype, plain, packed);
      }
    } else {
      std::printf("conv3x3 packed: this LibTorch has no oneDNN prepacked convolutions\n");
    }
  }
}
