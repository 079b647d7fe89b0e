// The fused CPU GEGLU against the plain formula: a * gelu(b) over the halves of the last dimension.
#include <torch/torch.h>

#include <catch2/catch.hpp>

#include "skip.h"
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/geglu.h"
#include "models/layers.h"
#include "sd/error.h"

namespace {

// a * gelu(b) in float64, the exact GELU written with erfc: x/2 (1 + erf(x/sqrt 2)) would lose
// the negative tail to cancellation even in double.
torch::Tensor reference_geglu(const torch::Tensor& projected) {
  auto parts = projected.to(torch::kDouble).chunk(2, -1);
  return parts[0] * 0.5 * parts[1] * torch::erfc(-parts[1] / std::sqrt(2.0));
}

bool have_avx512() { return sd::kernels::detail::cpu_has_avx512(); }

}  // namespace

TEST_CASE("The vectorized GELU is within 1e-6 + 2e-7 x^2 of erfc in double, relatively", "[unit][geglu]") {
  if (!have_avx512()) {
    CHECK_FALSE(sd::kernels::geglu_supported(torch::zeros({2, 4})));
    SD_SKIP("no AVX-512 on this CPU: the fused GEGLU is not used here");
  }
  std::vector<float> x;
  for (float v = -12.f; v <= 12.f; v += 0.0007f) x.push_back(v);
  std::vector<float> y(x.size());
  sd::kernels::detail::gelu_avx512(x.data(), y.data(), static_cast<int64_t>(x.size()));
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double xd = x[i];
    const double exact = 0.5 * xd * std::erfc(-xd / std::sqrt(2.0));
    if (std::abs(exact) < 1e-30) continue;  // below fp32's normal range
    // The fp32 rounding of x^2 / 2 moves exp() by ~x^2 * 6e-8 (relative); the rest is below 1e-6.
    worst = std::max(worst, std::abs(y[i] - exact) / std::abs(exact) / (1e-6 + 2e-7 * xd * xd));
  }
  INFO("max relative error / (1e-6 + 2e-7 x^2) = " << worst);
  CHECK(worst <= 1.0);
  // Special values: NaN propagates, +inf stays, large negative inputs give (-)0.
  const float special[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(), -200.f,
                           0.f};
  float out[4];
  sd::kernels::detail::gelu_avx512(special, out, 4);
  CHECK(std::isnan(out[0]));
  CHECK(out[1] == std::numeric_limits<float>::infinity());
  CHECK(out[2] == 0.f);
  CHECK(out[3] == 0.f);
}

TEST_CASE("Fused GEGLU matches a * gelu(b) in fp32 and bf16, for odd widths and batch shapes", "[unit][geglu]") {
  if (!have_avx512()) SD_SKIP("no AVX-512 on this CPU: the fused GEGLU is not used here");
  c10::InferenceMode guard;
  torch::manual_seed(5);
  for (int64_t h : {1, 15, 16, 40, 77, 1280}) {
    for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
      INFO("H " << h << " dtype " << dtype);
      const auto projected = (torch::randn({2, 33, 2 * h}) * 2.5).to(dtype);  // |b| <= ~10
      REQUIRE(sd::kernels::geglu_supported(projected));
      const auto out = sd::kernels::geglu(projected);
      REQUIRE(out.sizes() == torch::IntArrayRef({2, 33, h}));
      CHECK(out.scalar_type() == dtype);
      CHECK(out.is_contiguous());
      const auto ref = reference_geglu(projected);
      const auto err = (out.to(torch::kDouble) - ref).abs();
      if (dtype == torch::kFloat) {
        // The GELU's relative error (see above) plus the product's rounding.
        const auto b = projected.chunk(2, -1)[1].to(torch::kDouble);
        CHECK((err / (ref.abs() + 1e-30) / (1.1e-6 + 2e-7 * b * b)).max().item<double>() <= 1.0);
      } else {
        // One rounding of the product to bf16: half an ulp, 2^-9 relative (2^-8 leaves room for the GELU's).
        CHECK((err / (ref.abs() + 1e-30)).max().item<double>() <= std::ldexp(1.0, -8));
      }
    }
  }
}

TEST_CASE("GEGLU module gives the same result fused or through LibTorch ops", "[unit][geglu]") {
  c10::InferenceMode guard;
  torch::manual_seed(6);
  sd::GEGLU geglu(40, 80);
  const auto x = torch::randn({2, 9, 40});
  auto parts = geglu->proj(x).chunk(2, -1);
  const auto plain = parts[0] * torch::gelu(parts[1]);
  const auto out = geglu->forward(x);  // fused where the CPU has AVX-512
  CHECK(out.sizes() == plain.sizes());
  CHECK(torch::allclose(out, plain, 1e-6, 1e-6));
}

TEST_CASE("Fused GEGLU refuses input it cannot take", "[unit][geglu]") {
  if (!have_avx512()) SD_SKIP("no AVX-512 on this CPU: the fused GEGLU is not used here");
  CHECK_FALSE(sd::kernels::geglu_supported(torch::zeros({2, 5})));  // odd width
  CHECK_FALSE(sd::kernels::geglu_supported(torch::zeros({2, 4}, torch::kDouble)));
  CHECK_FALSE(sd::kernels::geglu_supported(torch::zeros({4, 2}).t()));  // last dim not unit-stride
  CHECK_THROWS_AS(sd::kernels::geglu(torch::zeros({3}, torch::kInt)), sd::Error);
  // A strided but unit-last-stride view is copied and computed right.
  const auto big = torch::randn({4, 20});
  const auto view = big.narrow(1, 2, 8);  // rows 20 apart
  REQUIRE(sd::kernels::geglu_supported(view));
  CHECK(torch::allclose(sd::kernels::geglu(view).to(torch::kDouble), reference_geglu(view), 1e-6, 1e-6));
}
