// AVX-512 GEGLU rows. Every load and store at a row end is masked: nothing is read or written
// past a row.
#include <cmath>
#include <cstdint>

#include "kernels/geglu.h"

#if defined(__GNUC__) && defined(__x86_64__)
#include "kernels/avx512_math.h"

namespace sd::kernels::detail {
namespace {

// gelu(x) = x/2 * (1 + erf(x/sqrt 2)). With z = |x|/sqrt 2, 1 + erf = 2 - erfc(z) for x >= 0 and
// erfc(z) for x < 0, so the small negative tail keeps its relative accuracy. erfc by the Chebyshev
// fit of Numerical Recipes (erfcc: t = 1/(1 + z/2), erfc = t exp(-z^2 + P(t)), fractional error
// below 1.2e-7 for every z >= 0) with the vectorized exp.
// NaN propagates; +inf -> +inf; -inf -> NaN (as x * 0.5 * (1 + erf(x)) gives in LibTorch).
SD_AVX512 SD_ALWAYS_INLINE __m512 gelu_ps(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.f);
  const __m512 z = _mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(0.70710678118654752f));
  const __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(z, _mm512_set1_ps(0.5f), one));
  __m512 p = _mm512_set1_ps(0.17087277f);
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.82215223f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.48851587f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.13520398f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.27886807f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.18628806f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.09678418f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.37409196f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.00002368f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.26551223f));
  const __m512 erfc = _mm512_mul_ps(t, exp_ps(_mm512_fnmadd_ps(z, z, p)));  // exp(p - z^2)
  const __mmask16 negative = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
  const __m512 one_plus_erf = _mm512_mask_blend_ps(negative, _mm512_sub_ps(_mm512_set1_ps(2.f), erfc), erfc);
  return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), one_plus_erf);
}

template <class E>
SD_AVX512 void geglu_rows(const typename E::T* in, int64_t in_row_stride, typename E::T* out, int64_t rows,
                          int64_t h) {
  for (int64_t r = 0; r < rows; ++r) {
    const auto* a = in + r * in_row_stride;
    const auto* b = a + h;
    auto* y = out + r * h;
    for (int64_t j = 0; j < h; j += 16) {
      const __mmask16 m = lanes(h - j);
      E::store(y + j, m, _mm512_mul_ps(gelu_ps(E::load(b + j, m)), E::load(a + j, m)));
    }
  }
}

}  // namespace

void geglu_rows_fp32_avx512(const float* in, int64_t in_row_stride, float* out, int64_t rows, int64_t h) {
  geglu_rows<Fp32Elements>(in, in_row_stride, out, rows, h);
}

void geglu_rows_bf16_avx512(const uint16_t* in, int64_t in_row_stride, uint16_t* out, int64_t rows, int64_t h) {
  geglu_rows<Bf16Elements>(in, in_row_stride, out, rows, h);
}

SD_AVX512 void gelu_avx512(const float* x, float* y, int64_t n) {
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = lanes(n - j);
    _mm512_mask_storeu_ps(y + j, m, gelu_ps(_mm512_maskz_loadu_ps(m, x + j)));
  }
}

}  // namespace sd::kernels::detail

#else  // not x86-64 GCC/Clang: geglu_supported() is false, these are never called.

namespace sd::kernels::detail {
void geglu_rows_fp32_avx512(const float*, int64_t, float*, int64_t, int64_t) {}
void geglu_rows_bf16_avx512(const uint16_t*, int64_t, uint16_t*, int64_t, int64_t) {}
void gelu_avx512(const float* x, float* y, int64_t n) {
  for (int64_t j = 0; j < n; ++j) y[j] = 0.5f * x[j] * (1.f + std::erf(x[j] * 0.70710678118654752f));
}
}  // namespace sd::kernels::detail

#endif
