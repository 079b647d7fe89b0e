#pragma once
// Fused GEGLU for the CPU: out = a * gelu(b) where [a, b] are the two halves of the last dimension
// of the feed-forward projection (diffusers' GEGLU: proj(x).chunk(2, -1), exact erf GELU). One pass
// over the projection instead of three LibTorch operators (chunk views, gelu, mul) and their two
// temporaries: LibTorch 1.13's bf16 gelu alone took 0.27 s of a 5 s UNet evaluation.
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace sd::kernels {

// True when geglu() runs on `projected`: a strided CPU float32/bfloat16 tensor whose last
// dimension is even, non-empty and unit-stride, on a CPU with AVX-512 (else use LibTorch ops).
bool geglu_supported(const at::Tensor& projected);

// projected: [..., 2H] -> [..., H] contiguous, same dtype; computed in fp32 per element (bf16: one
// rounding of the product). GELU via erfc(|x|/sqrt 2) (a Chebyshev fit with fractional error
// below 1.2e-7, and the vectorized exp): relative error a few 1e-7 for every input, the negative
// tail included (no 1 + erf cancellation there).
// Throws sd::Error when !geglu_supported(projected).
at::Tensor geglu(const at::Tensor& projected);

// Whether the fused pass is faster than LibTorch's own two ops here: supported, and not bf16 on
// LibTorch 2.x, whose vectorized bf16 gelu wins (measured per version: docs/performance.md).
bool geglu_pays_off(const at::Tensor& projected);

namespace detail {
// Row kernels (AVX-512, GCC target attributes): rows of 2H inputs -> rows of H outputs.
void geglu_rows_fp32_avx512(const float* in, int64_t in_row_stride, float* out, int64_t rows, int64_t h);
void geglu_rows_bf16_avx512(const uint16_t* in, int64_t in_row_stride, uint16_t* out, int64_t rows, int64_t h);
// The vectorized GELU alone, for tests that measure its error.
void gelu_avx512(const float* x, float* y, int64_t n);
}  // namespace detail

}  // namespace sd::kernels
