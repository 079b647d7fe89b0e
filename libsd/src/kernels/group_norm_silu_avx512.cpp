// AVX-512 passes of the fused GroupNorm + SiLU. Channel loops are masked at the end of a pixel row:
// nothing is read or written past it.
#include <cmath>
#include <cstdint>

#include "kernels/group_norm_silu.h"

#if defined(__GNUC__) && defined(__x86_64__)
#include "kernels/avx512_math.h"

namespace sd::kernels::detail {
namespace {

// fp32 partial sums over at most this many pixels before they are added to the double totals:
// short enough for fp32 to stay exact to ~1e-7 relative, long enough to amortize the flush.
constexpr int64_t kPixelBlock = 64;

template <class E>
SD_AVX512 void channel_moments(const typename E::T* x, int64_t pixels, int64_t channels, const float* shift,
                               double* sum, double* sumsq) {
  alignas(64) float s[16], q[16];
  // A block of pixel rows stays in L2 while every channel vector walks down it.
  for (int64_t p0 = 0; p0 < pixels; p0 += kPixelBlock) {
    const int64_t p1 = p0 + kPixelBlock < pixels ? p0 + kPixelBlock : pixels;
    for (int64_t c = 0; c < channels; c += 16) {
      const __mmask16 m = lanes(channels - c);
      const __m512 center = _mm512_maskz_loadu_ps(m, shift + c);
      __m512 acc_s = _mm512_setzero_ps(), acc_q = _mm512_setzero_ps();
      for (int64_t p = p0; p < p1; ++p) {
        const __m512 v = _mm512_sub_ps(E::load(x + p * channels + c, m), center);
        acc_s = _mm512_add_ps(acc_s, v);
        acc_q = _mm512_fmadd_ps(v, v, acc_q);
      }
      _mm512_store_ps(s, acc_s);
      _mm512_store_ps(q, acc_q);
      const int64_t n = channels - c < 16 ? channels - c : 16;
      for (int64_t i = 0; i < n; ++i) {
        sum[c + i] += s[i];
        sumsq[c + i] += q[i];
      }
    }
  }
}

// silu(v) = v / (1 + exp(-v)); exp(-v) overflows to inf for v < -88, giving -0 as it should.
template <class E>
SD_AVX512 void scale_shift_silu(const typename E::T* x, typename E::T* y, int64_t pixels, int64_t channels,
                                const float* scale, const float* shift) {
  const __m512 one = _mm512_set1_ps(1.f);
  for (int64_t p = 0; p < pixels; ++p) {
    const auto* row = x + p * channels;
    auto* out = y + p * channels;
    for (int64_t c = 0; c < channels; c += 16) {
      const __mmask16 m = lanes(channels - c);
      const __m512 v =
          _mm512_fmadd_ps(E::load(row + c, m), _mm512_maskz_loadu_ps(m, scale + c), _mm512_maskz_loadu_ps(m, shift + c));
      const __m512 e = exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), v));
      E::store(out + c, m, _mm512_div_ps(v, _mm512_add_ps(one, e)));
    }
  }
}

}  // namespace

void channel_moments_fp32_avx512(const float* x, int64_t pixels, int64_t channels, const float* shift, double* sum,
                                 double* sumsq) {
  channel_moments<Fp32Elements>(x, pixels, channels, shift, sum, sumsq);
}
void channel_moments_bf16_avx512(const uint16_t* x, int64_t pixels, int64_t channels, const float* shift,
                                 double* sum, double* sumsq) {
  channel_moments<Bf16Elements>(x, pixels, channels, shift, sum, sumsq);
}
void scale_shift_silu_fp32_avx512(const float* x, float* y, int64_t pixels, int64_t channels, const float* scale,
                                  const float* shift) {
  scale_shift_silu<Fp32Elements>(x, y, pixels, channels, scale, shift);
}
void scale_shift_silu_bf16_avx512(const uint16_t* x, uint16_t* y, int64_t pixels, int64_t channels,
                                  const float* scale, const float* shift) {
  scale_shift_silu<Bf16Elements>(x, y, pixels, channels, scale, shift);
}

}  // namespace sd::kernels::detail

#else  // not x86-64 GCC/Clang: group_norm_silu_supported() is false, these are never called.

namespace sd::kernels::detail {
void channel_moments_fp32_avx512(const float*, int64_t, int64_t, const float*, double*, double*) {}
void channel_moments_bf16_avx512(const uint16_t*, int64_t, int64_t, const float*, double*, double*) {}
void scale_shift_silu_fp32_avx512(const float*, float*, int64_t, int64_t, const float*, const float*) {}
void scale_shift_silu_bf16_avx512(const uint16_t*, uint16_t*, int64_t, int64_t, const float*, const float*) {}
}  // namespace sd::kernels::detail

#endif
