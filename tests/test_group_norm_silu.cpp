// The fused GroupNorm + SiLU against LibTorch's group_norm followed by silu, computed in float64.
#include <torch/torch.h>

#include <catch2/catch.hpp>

#include "skip.h"
#include <chrono>
#include <cstdio>
#include <functional>

#include "kernels/cpu_features.h"
#include "kernels/group_norm_silu.h"
#include "models/layers.h"
#include "sd/error.h"

namespace {

torch::Tensor channels_last(const torch::Tensor& t) { return t.contiguous(torch::MemoryFormat::ChannelsLast); }

torch::Tensor reference(const torch::Tensor& x, int64_t groups, const torch::Tensor& w, const torch::Tensor& b,
                        double eps) {
  return torch::silu(torch::group_norm(x.to(torch::kDouble), groups, w.to(torch::kDouble), b.to(torch::kDouble), eps));
}

}  // namespace

TEST_CASE("Fused GroupNorm+SiLU matches group_norm then silu in fp32 and bf16", "[unit][group_norm]") {
  if (!sd::kernels::detail::cpu_has_avx512()) {
    CHECK_FALSE(sd::kernels::group_norm_silu_supported(channels_last(torch::randn({1, 4, 2, 2})), 2,
                                                       torch::ones({4}), torch::zeros({4})));
    SD_SKIP("no AVX-512 on this CPU: the fused GroupNorm+SiLU is not used here");
  }
  c10::InferenceMode guard;
  torch::manual_seed(7);
  struct Case {
    std::vector<int64_t> shape;
    int64_t groups;
    double offset;  // a mean far from 0 must not cancel the variance
  };
  for (const Case& c : {Case{{1, 32, 5, 7}, 8, 0.0}, Case{{2, 40, 9, 3}, 4, 0.0}, Case{{1, 128, 64, 64}, 32, 0.0},
                        Case{{2, 24, 33, 17}, 3, 50.0}, Case{{1, 6, 1, 1}, 2, 0.0}}) {
    for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
      INFO("shape " << c10::IntArrayRef(c.shape) << " groups " << c.groups << " offset " << c.offset << " " << dtype);
      const int64_t channels = c.shape[1];
      const auto x = channels_last((torch::randn(c.shape) * 2 + c.offset).to(dtype));
      const auto w = (torch::randn({channels}) * 0.5 + 1).to(dtype), b = (torch::randn({channels}) * 0.3).to(dtype);
      REQUIRE(sd::kernels::group_norm_silu_supported(x, c.groups, w, b));
      const auto out = sd::kernels::group_norm_silu(x, c.groups, w, b, 1e-6);
      CHECK(out.sizes() == x.sizes());
      CHECK(out.scalar_type() == dtype);
      CHECK(out.is_contiguous(torch::MemoryFormat::ChannelsLast));
      const auto ref = reference(x, c.groups, w, b, 1e-6);
      const double err = (out.to(torch::kDouble) - ref).abs().max().item<double>();
      const double scale = ref.abs().max().item<double>();
      INFO("max abs error " << err << " of max " << scale);
      if (c.shape[2] * c.shape[3] == 1) {
        CHECK(torch::isfinite(out).all().item<bool>());  // variance 0 within a group: only eps, no NaN
      }
      CHECK(err <= (dtype == torch::kFloat ? 2e-6 : 1.0 / 128) * (1 + scale));
    }
  }
}

TEST_CASE("GroupNorm::forward_silu gives silu(forward) fused or not", "[unit][group_norm]") {
  c10::InferenceMode guard;
  sd::GroupNorm norm(torch::nn::GroupNormOptions(4, 16).eps(1e-5));
  torch::manual_seed(8);
  for (auto& p : norm->parameters()) p.set_data(torch::randn_like(p));
  const auto x = torch::randn({2, 16, 6, 6});
  const auto expected = torch::silu(norm->forward(x));
  CHECK(torch::allclose(norm->forward_silu(x), expected, 1e-5, 1e-5));  // contiguous: LibTorch's path
  CHECK(torch::allclose(norm->forward_silu(channels_last(x)), expected, 1e-5, 1e-5));  // fused where available
  // Input in another dtype than the weights (autocast) takes LibTorch's path.
  const auto low = channels_last(x).to(torch::kBFloat16);
  CHECK_FALSE(sd::kernels::group_norm_silu_supported(low, 4, norm->weight, norm->bias));
  CHECK(norm->forward_silu(low).scalar_type() == torch::kFloat);
  CHECK_THROWS_AS(sd::kernels::group_norm_silu(x, 3, norm->weight, norm->bias, 1e-5), sd::Error);
}

TEST_CASE("GroupNorm+SiLU benchmark vs LibTorch ops", "[.bench][group-norm-bench]") {
  // Not a test: `sd_tests "[group-norm-bench]"` prints timings of the VAE's largest shapes.
  if (!sd::kernels::detail::cpu_has_avx512()) SD_SKIP("no AVX-512 on this CPU");
  c10::InferenceMode guard;
  for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
    for (auto shape : {std::vector<int64_t>{1, 128, 512, 512}, std::vector<int64_t>{1, 512, 64, 64}}) {
      const auto x = channels_last(torch::randn(shape).to(dtype));
      const auto w = torch::ones({shape[1]}).to(dtype), b = torch::zeros({shape[1]}).to(dtype);
      auto time = [](const std::function<void()>& f) {
        f();
        const auto start = std::chrono::steady_clock::now();
        for (int i = 0; i < 5; ++i) f();
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / 5 * 1e3;
      };
      const double ops = time([&] {
        auto y = torch::group_norm(x, 32, w, b, 1e-6);
        torch::silu_(y);
      });
      const double gn_only = time([&] { torch::group_norm(x, 32, w, b, 1e-6); });
      const double fused = time([&] { sd::kernels::group_norm_silu(x, 32, w, b, 1e-6); });
      auto reference_out = torch::group_norm(x, 32, w, b, 1e-6);
      torch::silu_(reference_out);
      CHECK(torch::allclose(sd::kernels::group_norm_silu(x, 32, w, b, 1e-6).to(torch::kFloat),
                            reference_out.to(torch::kFloat), 1e-2, 1e-2));
      const double empty = time([&] { torch::empty_like(x).fill_(0); });
      std::printf("%s %s: LibTorch group_norm+silu_ %.1f ms (group_norm %.1f), fused %.1f ms, empty+fill %.1f ms\n",
                  c10::toString(dtype), c10::str(c10::IntArrayRef(shape)).c_str(), ops, gn_only, fused, empty);
    }
  }
}
