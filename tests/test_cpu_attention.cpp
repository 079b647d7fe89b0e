#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <limits>
#include <vector>

#include "golden.h"
#include "skip.h"
#include "kernels/cpu_attention.h"
#include "kernels/cpu_attention_task.h"
#include "sd/error.h"

namespace {

using sd::kernels::AttentionIsa;
using sd::kernels::AttentionOptions;

// The plain formula in float64: what every kernel is judged against.
at::Tensor reference_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale) {
  const at::Tensor s = at::bmm(q.to(at::kDouble), k.to(at::kDouble).transpose(1, 2)) * scale;
  return at::bmm(at::softmax(s, -1), v.to(at::kDouble));
}

struct Shape {
  int64_t batch, nq, nk, d;
};

// Tokens off the tile sizes (1, 7, 77, 100, 257), every head dim the models use and some that
// are not multiples of 16, Nq != Nk, batch*heads 1 and 3.
const std::vector<Shape> kShapes = {
    {1, 1, 1, 8},      {3, 7, 77, 40},    {1, 77, 7, 8},     {3, 100, 257, 40}, {1, 257, 100, 64},
    {3, 257, 77, 80},  {1, 100, 1, 160},  {3, 1, 257, 160},  {1, 77, 100, 512}, {1, 257, 257, 40},
    {3, 7, 7, 77},     {1, 100, 257, 33},
};

std::vector<AttentionIsa> available_isas() {
  std::vector<AttentionIsa> isas;
  for (AttentionIsa isa : {AttentionIsa::kGeneric, AttentionIsa::kAvx512, AttentionIsa::kAvx512Bf16})
    if (sd::kernels::cpu_attention_isa_available(isa)) isas.push_back(isa);
  return isas;
}

std::string shape_name(const Shape& s) {
  return "B=" + std::to_string(s.batch) + " Nq=" + std::to_string(s.nq) + " Nk=" + std::to_string(s.nk) +
         " D=" + std::to_string(s.d);
}

}  // namespace

TEST_CASE("cpu_attention fp32 matches the plain formula in float64", "[unit][attention]") {
  at::manual_seed(1234);
  for (AttentionIsa isa : available_isas()) {
    for (const Shape& shape : kShapes) {
      for (double scale_mul : {1.0, 4.0}) {  // 4x: peaked softmax, large spread of scores
        const at::Tensor q = at::randn({shape.batch, shape.nq, shape.d});
        const at::Tensor k = at::randn({shape.batch, shape.nk, shape.d});
        const at::Tensor v = at::randn({shape.batch, shape.nk, shape.d});
        const double scale = scale_mul / std::sqrt(static_cast<double>(shape.d));
        AttentionOptions options;
        options.isa = isa;
        const at::Tensor out = sd::kernels::cpu_attention(q, k, v, scale, options);
        REQUIRE(out.scalar_type() == at::kFloat);
        REQUIRE(out.sizes() == q.sizes());
        const auto cmp = golden::compare(out, reference_attention(q, k, v, scale), {0.0, 1e-5});
        INFO(sd::kernels::attention_isa_name(isa) << " " << shape_name(shape) << " scale x" << scale_mul << ": "
                                                  << cmp.describe());
        CHECK(cmp.ok);
        CHECK(cmp.rel <= 1e-5);
      }
    }
  }
}

TEST_CASE("cpu_attention fp32 with tiny blocks exercises the online softmax", "[unit][attention]") {
  at::manual_seed(7);
  // Keys sorted by their score against a common direction, so that later key blocks raise the
  // running maximum again and again and the accumulated output has to be rescaled each time.
  const at::Tensor q = at::randn({3, 100, 40}).abs();
  at::Tensor k = at::randn({3, 257, 40});
  k = std::get<0>(at::sort(k, 1));
  const at::Tensor v = at::randn({3, 257, 40});
  for (AttentionIsa isa : available_isas()) {
    for (int64_t key_block : {2, 16, 30, 100}) {
      AttentionOptions options;
      options.isa = isa;
      options.key_block = key_block;
      options.query_block = 5;
      const at::Tensor out = sd::kernels::cpu_attention(q, k, v, 0.5, options);
      const auto cmp = golden::compare(out, reference_attention(q, k, v, 0.5), {0.0, 1e-5});
      INFO(sd::kernels::attention_isa_name(isa) << " key block " << key_block << ": " << cmp.describe());
      CHECK(cmp.rel <= 1e-5);
    }
  }
}

TEST_CASE("cpu_attention bf16 matches the plain formula within bf16 rounding", "[unit][attention]") {
  // bf16 keeps 8 significant bits (relative rounding up to 2^-9 = 0.2%). The kernel rounds twice:
  // the probabilities before the product with v (as a bf16 matmul would) and the output; both
  // errors are bounded by a few 2^-9 of the output's scale, hence 1% of max|ref|. The reference uses
  // the same bf16 inputs, so input rounding is not part of the error. LibTorch's own bf16 ops
  // (which also round the scores to bf16) are printed for comparison.
  at::manual_seed(99);
  for (AttentionIsa isa : available_isas()) {
    for (const Shape& shape : kShapes) {
      const at::Tensor q = at::randn({shape.batch, shape.nq, shape.d}).to(at::kBFloat16);
      const at::Tensor k = at::randn({shape.batch, shape.nk, shape.d}).to(at::kBFloat16);
      const at::Tensor v = at::randn({shape.batch, shape.nk, shape.d}).to(at::kBFloat16);
      const double scale = 1.0 / std::sqrt(static_cast<double>(shape.d));
      AttentionOptions options;
      options.isa = isa;
      const at::Tensor out = sd::kernels::cpu_attention(q, k, v, scale, options);
      REQUIRE(out.scalar_type() == at::kBFloat16);
      REQUIRE(out.sizes() == q.sizes());
      const at::Tensor ref = reference_attention(q, k, v, scale);
      const auto cmp = golden::compare(out, ref, {0.0, 1e-2});
      const at::Tensor torch_bf16 = at::bmm(at::softmax(at::baddbmm(at::empty({shape.batch, shape.nq, shape.nk}, q.options()), q,
                                                                    k.transpose(1, 2), 0.0, scale),
                                                        -1),
                                            v);
      const auto cmp_torch = golden::compare(torch_bf16, ref, {0.0, 1e-2});
      INFO(sd::kernels::attention_isa_name(isa) << " " << shape_name(shape) << ": " << cmp.describe()
                                                << "; LibTorch bf16 ops: " << cmp_torch.describe());
      CHECK(cmp.rel <= 1e-2);
    }
  }
}

TEST_CASE("cpu_attention accepts strided views and matches the contiguous result", "[unit][attention]") {
  at::manual_seed(5);
  // [Nq, B, D] permuted to [B, Nq, D]: unit stride in D, other strides arbitrary.
  const at::Tensor q = at::randn({77, 3, 40}).permute({1, 0, 2});
  const at::Tensor k = at::randn({100, 3, 40}).permute({1, 0, 2});
  // D not unit-stride: the kernel copies.
  const at::Tensor v = at::randn({3, 40, 100}).transpose(1, 2);
  REQUIRE_FALSE(q.is_contiguous());
  for (AttentionIsa isa : available_isas()) {
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      AttentionOptions options;
      options.isa = isa;
      const at::Tensor qd = q.to(dtype), kd = k.to(dtype), vd = v.to(dtype);
      const at::Tensor strided = sd::kernels::cpu_attention(qd, kd, vd, 0.2, options);
      const at::Tensor dense =
          sd::kernels::cpu_attention(qd.contiguous(), kd.contiguous(), vd.contiguous(), 0.2, options);
      INFO(sd::kernels::attention_isa_name(isa) << " " << dtype);
      CHECK(strided.is_contiguous());
      CHECK(at::equal(strided, dense));
    }
  }
}

TEST_CASE("cpu_attention gives the same bits with 1 and 2 threads", "[unit][attention]") {
  // Rows are independent and every accumulation order is fixed by the shapes, not by the
  // blocking that the thread count influences.
  at::manual_seed(11);
  const at::Tensor q = at::randn({3, 100, 40}), k = at::randn({3, 77, 40}), v = at::randn({3, 77, 40});
  const int saved = at::get_num_threads();
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    at::set_num_threads(1);
    const at::Tensor one = sd::kernels::cpu_attention(q.to(dtype), k.to(dtype), v.to(dtype), 0.3);
    at::set_num_threads(2);
    const at::Tensor two = sd::kernels::cpu_attention(q.to(dtype), k.to(dtype), v.to(dtype), 0.3);
    CHECK(at::equal(one, two));
  }
  at::set_num_threads(saved);
}

TEST_CASE("cpu_attention rejects bad input with sd::Error", "[unit][attention]") {
  const at::Tensor q = at::randn({2, 5, 8}), k = at::randn({2, 6, 8}), v = at::randn({2, 6, 8});
  CHECK(sd::kernels::cpu_attention_supported(q, k, v));
  CHECK_FALSE(sd::kernels::cpu_attention_supported(q.to(at::kDouble), k, v));
  CHECK_FALSE(sd::kernels::cpu_attention_supported(q, k.to(at::kBFloat16), v));
  CHECK_FALSE(sd::kernels::cpu_attention_supported(q[0], k, v));
  CHECK_FALSE(sd::kernels::cpu_attention_supported(q, k, v.narrow(1, 0, 5)));
  CHECK_FALSE(sd::kernels::cpu_attention_supported(q, k.narrow(2, 0, 4), v));
  CHECK_FALSE(sd::kernels::cpu_attention_supported(q, k.narrow(1, 0, 0), v.narrow(1, 0, 0)));
  CHECK_FALSE(sd::kernels::cpu_attention_supported(q, at::Tensor(), v));
  CHECK_THROWS_AS(sd::kernels::cpu_attention(q, k.to(at::kBFloat16), v, 1.0), sd::Error);
  CHECK_THROWS_WITH(sd::kernels::cpu_attention(q, k, v.narrow(1, 0, 5), 1.0), Catch::Contains("[2, 5, 8]"));
  CHECK_THROWS_AS(sd::kernels::cpu_attention(q, k, v, std::nan("")), sd::Error);
  for (AttentionIsa isa : {AttentionIsa::kAvx512, AttentionIsa::kAvx512Bf16}) {
    if (sd::kernels::cpu_attention_isa_available(isa)) continue;
    AttentionOptions options;
    options.isa = isa;
    CHECK_THROWS_AS(sd::kernels::cpu_attention(q, k, v, 1.0, options), sd::Error);
  }
  // Empty query sets are fine.
  CHECK(sd::kernels::cpu_attention(q.narrow(1, 0, 0), k, v, 1.0).sizes() == at::IntArrayRef({2, 0, 8}));
}

TEST_CASE("cpu_attention's vectorized exp is accurate to a few 1e-7", "[unit][attention]") {
  if (!sd::kernels::cpu_attention_isa_available(AttentionIsa::kAvx512)) SD_SKIP("no AVX-512 on this CPU");
  std::vector<float> x;
  for (int i = 0; i <= 200000; ++i) x.push_back(-87.f * static_cast<float>(i) / 200000.f);
  x.push_back(-0.f);
  x.push_back(-1e-30f);
  std::vector<float> y(x.size());
  sd::kernels::detail::exp_avx512(x.data(), y.data(), static_cast<int64_t>(x.size()));
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double ref = std::exp(static_cast<double>(x[i]));
    worst = std::max(worst, std::abs(y[i] - ref) / ref);
  }
  INFO("max relative error over [-87, 0]: " << worst);
  CHECK(worst < 5e-7);
  // Far below the range: 0, not garbage; NaN stays NaN.
  const float special[3] = {-200.f, -std::numeric_limits<float>::infinity(), std::nanf("")};
  float out[3];
  sd::kernels::detail::exp_avx512(special, out, 3);
  CHECK(out[0] == 0.f);
  CHECK(out[1] == 0.f);
  CHECK(std::isnan(out[2]));
}

// ---- Hidden micro-benchmark: ./build/tests/sd_tests "[attention-bench]" -------------------------

namespace {

struct Timing {
  double wall_ms;  // median wall-clock time
  double cpu_ms;   // median CPU time of the whole process (all threads): robust to other load
};

double process_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

Timing median_time(const std::function<void()>& fn, int runs) {
  fn();  // warm-up (allocations, caches)
  std::vector<double> wall, cpu;
  for (int i = 0; i < runs; ++i) {
    const double c0 = process_cpu_ms();
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    wall.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    cpu.push_back(process_cpu_ms() - c0);
  }
  std::sort(wall.begin(), wall.end());
  std::sort(cpu.begin(), cpu.end());
  return {wall[wall.size() / 2], cpu[cpu.size() / 2]};
}

}  // namespace

// Wall-clock medians with 2 threads (SD_BENCH_THREADS overrides); the CPU time columns (all threads)
// say what the work costs when other jobs share the cores. SD_BENCH_CASE picks cases by name.
TEST_CASE("cpu_attention benchmark vs LibTorch ops", "[.bench][attention-bench]") {
  const char* threads_env = std::getenv("SD_BENCH_THREADS");
  at::set_num_threads(threads_env ? std::max(1, std::atoi(threads_env)) : 2);
  const char* case_env = std::getenv("SD_BENCH_CASE");
  struct Case {
    const char* name;
    Shape shape;
  };
  // SD 1.5 at 512x512 with CFG (batch 2 x 8 heads) and the VAE mid-block attention.
  const std::vector<Case> cases = {
      {"self 64x64", {16, 4096, 4096, 40}}, {"self 32x32", {16, 1024, 1024, 80}},
      {"self 16x16", {16, 256, 256, 160}},  {"self 8x8", {16, 64, 64, 160}},
      {"cross 64x64", {16, 4096, 77, 40}},  {"cross 32x32", {16, 1024, 77, 80}},
      {"cross 16x16", {16, 256, 77, 160}},  {"cross 8x8", {16, 64, 77, 160}},
      {"vae mid", {1, 4096, 4096, 512}},
  };
  at::manual_seed(0);
  std::printf("%-12s %-17s %-5s %11s %9s %8s %9s %8s %8s %8s %8s %9s\n", "case", "shape", "dtype", "libtorch ms",
              "fused ms", "speedup", "lt GF/s", "GF/s", "lt cpu", "cpu", "rel err", "sdpa ms");
  for (const Case& c : cases) {
    if (case_env && std::string(c.name).find(case_env) == std::string::npos) continue;
    const Shape& s = c.shape;
    const double flops = 4.0 * s.batch * s.nq * s.nk * s.d;
    const int runs = flops > 5e9 ? 5 : flops > 5e8 ? 9 : 31;
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      const at::Tensor q = at::randn({s.batch, s.nq, s.d}).to(dtype);
      const at::Tensor k = at::randn({s.batch, s.nk, s.d}).to(dtype);
      const at::Tensor v = at::randn({s.batch, s.nk, s.d}).to(dtype);
      const double scale = 1.0 / std::sqrt(static_cast<double>(s.d));
      at::Tensor base, fused;
      const Timing t_base = median_time(
          [&] {
            // diffusers' AttnProcessor: baddbmm into an uninitialized buffer (beta 0), softmax, bmm.
            base = at::bmm(at::softmax(at::baddbmm(at::empty({s.batch, s.nq, s.nk}, q.options()), q,
                                                   k.transpose(1, 2), 0.0, scale),
                                       -1),
                           v);
          },
          runs);
      const Timing t_fused = median_time([&] { fused = sd::kernels::cpu_attention(q, k, v, scale); }, runs);
      const auto cmp = golden::compare(fused, base, {0.0, 1.0});
      // LibTorch 2.x's own fused CPU kernel (flash attention), the alternative on that version. It
      // wants [B, heads, N, D]: given 3-D tensors it falls back to a path 3-4x slower.
      double sdpa_ms = std::numeric_limits<double>::quiet_NaN();
#if TORCH_VERSION_MAJOR >= 2
      at::Tensor sdpa;
      const auto q4 = q.unsqueeze(0), k4 = k.unsqueeze(0), v4 = v.unsqueeze(0);
      sdpa_ms = median_time([&] { sdpa = at::scaled_dot_product_attention(q4, k4, v4).squeeze(0); }, runs).wall_ms;
      CHECK(golden::compare(sdpa, base, {0.0, 1.0}).rel < (dtype == at::kFloat ? 1e-4 : 3e-2));
#endif
      char shape[64];
      std::snprintf(shape, sizeof shape, "%ldx%ldx%ldx%ld", static_cast<long>(s.batch), static_cast<long>(s.nq),
                    static_cast<long>(s.nk), static_cast<long>(s.d));
      std::printf("%-12s %-17s %-5s %11.2f %9.2f %7.2fx %9.1f %8.1f %8.1f %8.1f %8.1e %9.2f\n", c.name, shape,
                  dtype == at::kFloat ? "fp32" : "bf16", t_base.wall_ms, t_fused.wall_ms,
                  t_base.wall_ms / t_fused.wall_ms, flops / t_base.wall_ms / 1e6, flops / t_fused.wall_ms / 1e6,
                  t_base.cpu_ms, t_fused.cpu_ms, cmp.rel, sdpa_ms);
      std::fflush(stdout);
      CHECK(cmp.rel < (dtype == at::kFloat ? 1e-4 : 3e-2));
    }
  }
  std::printf("kernel: %s (fp32), %s (bf16); threads %d\n",
              sd::kernels::attention_isa_name(sd::kernels::cpu_attention_best_isa(at::kFloat)),
              sd::kernels::attention_isa_name(sd::kernels::cpu_attention_best_isa(at::kBFloat16)),
              at::get_num_threads());
}
