#pragma once
// Fused GroupNorm + SiLU for channels-last CPU tensors: silu(group_norm(x)) in two passes over x
// (moments, then normalize-scale-shift-SiLU) instead of LibTorch's GroupNorm followed by a separate
// SiLU pass. Every ResnetBlock2D starts with this pair; in the VAE decoder at 512x512 the two took
// ~0.85 s of a 7 s bf16 decode (docs/performance.md).
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace sd::kernels {

// True when group_norm_silu() runs on these: a 4-D channels-last contiguous CPU float32/bfloat16
// x [N, C, H, W], weight and bias [C] in x's dtype, C divisible by groups, a CPU with AVX-512.
bool group_norm_silu_supported(const at::Tensor& x, int64_t groups, const at::Tensor& weight,
                               const at::Tensor& bias);

// silu(group_norm(x, groups, weight, bias, eps)) as a new channels-last tensor in x's dtype.
// Statistics in fp32 per pixel block, accumulated in double, per channel around a shift (its first
// value) and combined exactly across the group's channels, so a large mean does not cancel the
// variance. Throws sd::Error when !group_norm_silu_supported(...).
at::Tensor group_norm_silu(const at::Tensor& x, int64_t groups, const at::Tensor& weight, const at::Tensor& bias,
                           double eps);

// Whether the fused kernel is faster than LibTorch's group_norm + silu_ for this input, by
// measurement per LibTorch version and dtype (docs/performance.md): fp32 up to 64x64 pixels only
// (above, LibTorch's own is 1-13 % faster), bf16 everywhere on 1.13 and up to 256x256 on 2.x.
bool group_norm_silu_pays_off(const at::Tensor& x, int64_t groups, const at::Tensor& weight,
                              const at::Tensor& bias);

namespace detail {
// x: `pixels` rows of C channels. sum[c] += sum_p (x[p][c] - shift[c]), sumsq[c] += ... squared.
void channel_moments_fp32_avx512(const float* x, int64_t pixels, int64_t channels, const float* shift, double* sum,
                                 double* sumsq);
void channel_moments_bf16_avx512(const uint16_t* x, int64_t pixels, int64_t channels, const float* shift,
                                 double* sum, double* sumsq);
// y[p][c] = silu(x[p][c] * scale[c] + shift[c]).
void scale_shift_silu_fp32_avx512(const float* x, float* y, int64_t pixels, int64_t channels, const float* scale,
                                  const float* shift);
void scale_shift_silu_bf16_avx512(const uint16_t* x, uint16_t* y, int64_t pixels, int64_t channels,
                                  const float* scale, const float* shift);
}  // namespace detail

}  // namespace sd::kernels
