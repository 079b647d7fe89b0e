#include "kernels/group_norm_silu.h"

#include <torch/version.h>

#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <c10/util/BFloat16.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <vector>

#include "kernels/cpu_features.h"
#include "sd/error.h"

namespace sd::kernels {
namespace {

// Pixels per parallel task: enough work to amortize a task's start and its partial sums' merge.
constexpr int64_t kGrainPixels = 1024;

template <class T>
struct Passes;
template <>
struct Passes<float> {
  static constexpr auto moments = detail::channel_moments_fp32_avx512;
  static constexpr auto apply = detail::scale_shift_silu_fp32_avx512;
};
template <>
struct Passes<uint16_t> {
  static constexpr auto moments = detail::channel_moments_bf16_avx512;
  static constexpr auto apply = detail::scale_shift_silu_bf16_avx512;
};

float to_float(float v) { return v; }
float to_float(uint16_t bits) { return static_cast<float>(c10::BFloat16(bits, c10::BFloat16::from_bits())); }

template <class T>
void run(const T* x, T* y, int64_t batch, int64_t pixels, int64_t channels, int64_t groups, const float* gamma,
         const float* beta, double eps) {
  const int64_t per_group = channels / groups;
  std::vector<float> center(channels), scale(channels), shift(channels);
  for (int64_t n = 0; n < batch; ++n) {
    const T* xn = x + n * pixels * channels;
    T* yn = y + n * pixels * channels;
    // Moments per channel around its first value (keeps E[v^2] - E[v]^2 well conditioned).
    for (int64_t c = 0; c < channels; ++c) center[c] = to_float(xn[c]);
    std::vector<double> sum(channels, 0.0), sumsq(channels, 0.0);
    std::mutex merge;
    at::parallel_for(0, pixels, kGrainPixels, [&](int64_t begin, int64_t end) {
      std::vector<double> s(channels, 0.0), q(channels, 0.0);
      Passes<T>::moments(xn + begin * channels, end - begin, channels, center.data(), s.data(), q.data());
      std::lock_guard<std::mutex> lock(merge);
      for (int64_t c = 0; c < channels; ++c) {
        sum[c] += s[c];
        sumsq[c] += q[c];
      }
    });
    // Per group: the channels' means and centered second moments, combined exactly.
    const double count = static_cast<double>(pixels);
    for (int64_t g = 0; g < groups; ++g) {
      double mean = 0;
      for (int64_t c = g * per_group; c < (g + 1) * per_group; ++c) mean += center[c] + sum[c] / count;
      mean /= static_cast<double>(per_group);
      double m2 = 0;
      for (int64_t c = g * per_group; c < (g + 1) * per_group; ++c) {
        const double channel_mean = center[c] + sum[c] / count;
        m2 += sumsq[c] - sum[c] * sum[c] / count + count * (channel_mean - mean) * (channel_mean - mean);
      }
      const double variance = std::max(0.0, m2 / (count * static_cast<double>(per_group)));
      const double rstd = 1.0 / std::sqrt(variance + eps);
      for (int64_t c = g * per_group; c < (g + 1) * per_group; ++c) {
        scale[c] = static_cast<float>(rstd * gamma[c]);
        shift[c] = static_cast<float>(beta[c] - mean * rstd * gamma[c]);
      }
    }
    at::parallel_for(0, pixels, kGrainPixels, [&](int64_t begin, int64_t end) {
      Passes<T>::apply(xn + begin * channels, yn + begin * channels, end - begin, channels, scale.data(), shift.data());
    });
  }
}

}  // namespace

bool group_norm_silu_supported(const at::Tensor& x, int64_t groups, const at::Tensor& weight,
                               const at::Tensor& bias) {
  if (!x.defined() || !weight.defined() || !bias.defined()) return false;
  if (!x.device().is_cpu() || x.layout() != at::kStrided || x.dim() != 4 || x.numel() == 0) return false;
  if (x.scalar_type() != at::kFloat && x.scalar_type() != at::kBFloat16) return false;
  if (weight.scalar_type() != x.scalar_type() || bias.scalar_type() != x.scalar_type()) return false;
  const int64_t channels = x.size(1);
  if (groups <= 0 || channels % groups != 0 || weight.numel() != channels || bias.numel() != channels) return false;
  return x.is_contiguous(at::MemoryFormat::ChannelsLast) && detail::cpu_has_avx512();
}

bool group_norm_silu_pays_off(const at::Tensor& x, int64_t groups, const at::Tensor& weight,
                              const at::Tensor& bias) {
  if (!group_norm_silu_supported(x, groups, weight, bias)) return false;
  const int64_t pixels = x.size(2) * x.size(3);
  if (x.scalar_type() == at::kFloat) return pixels <= 64 * 64;
#if TORCH_VERSION_MAJOR >= 2
  return pixels <= 256 * 256;
#else
  return true;
#endif
}

at::Tensor group_norm_silu(const at::Tensor& x, int64_t groups, const at::Tensor& weight, const at::Tensor& bias,
                           double eps) {
  RECORD_USER_SCOPE("sd::group_norm_silu");  // not a LibTorch operator: named for profilers
  SD_CHECK(group_norm_silu_supported(x, groups, weight, bias),
           "group_norm_silu: expected a channels-last CPU float32/bfloat16 [N, C, H, W] with C divisible by groups ",
           "and weight/bias [C] of its dtype, on a CPU with AVX-512; got x ", x.sizes(), " ", x.scalar_type(),
           ", groups ", groups, ", weight ", weight.sizes(), " ", weight.scalar_type());
  const int64_t batch = x.size(0), channels = x.size(1), pixels = x.size(2) * x.size(3);
  at::Tensor out = at::empty_like(x, at::MemoryFormat::ChannelsLast);
  const at::Tensor gamma = weight.to(at::kFloat).contiguous(), beta = bias.to(at::kFloat).contiguous();
  if (x.scalar_type() == at::kFloat) {
    run<float>(x.data_ptr<float>(), out.data_ptr<float>(), batch, pixels, channels, groups, gamma.data_ptr<float>(),
               beta.data_ptr<float>(), eps);
  } else {
    run<uint16_t>(reinterpret_cast<const uint16_t*>(x.data_ptr<at::BFloat16>()),
                  reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>()), batch, pixels, channels, groups,
                  gamma.data_ptr<float>(), beta.data_ptr<float>(), eps);
  }
  return out;
}

}  // namespace sd::kernels
