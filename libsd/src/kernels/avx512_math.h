#pragma once
// Vector helpers shared by the AVX-512 kernels (attention, GEGLU). Functions carry GCC target
// attributes, so no special compiler flags are needed: callers run them only after run-time CPU
// detection (kernels/cpu_features). Only for x86-64 GCC/Clang.
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>

#include <cstdint>

// GCC 12's AVX-512 intrinsics initialize their "undefined" pass-through operand from itself, which
// -Wuninitialized reports at every use (GCC bug 105593, fixed in later releases). Nothing here reads
// an uninitialized value.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define SD_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define SD_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,avx512bf16")))
#define SD_ALWAYS_INLINE inline __attribute__((always_inline))

namespace sd::kernels::detail {

// The first min(n, 16) lanes.
SD_AVX512 SD_ALWAYS_INLINE __mmask16 lanes(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
}

// exp(x) for the softmax, where x = score - running max <= 0. Cephes' expf scheme: x = n ln2 + r
// with |r| <= ln2/2 (ln2 split in two so r is exact), a degree-7 polynomial for e^r, then 2^n by
// vscalefps, which also underflows to 0 gracefully. Relative error a few 1e-7 over [-87, 0]
// (the unit test measures it against std::exp in double through exp_avx512); inputs below -104
// give 0 and NaN propagates.
SD_AVX512 SD_ALWAYS_INLINE __m512 exp_ps(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-104.f), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 y = _mm512_set1_ps(1.9875691500e-4f);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(y, n);
}

// bf16 <-> fp32 for the lanes in `mask` (others read as 0 / not written). The store rounds to
// nearest even and keeps NaN a quiet NaN, as c10::BFloat16 does; AVX-512F/BW only (no AVX512-BF16).
SD_AVX512 SD_ALWAYS_INLINE __m512 load_bf16(const uint16_t* p, __mmask16 mask) {
  const __m512i wide = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}

SD_AVX512 SD_ALWAYS_INLINE void store_bf16(uint16_t* p, __mmask16 mask, __m512 v) {
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), lsb)), 16);
  rounded = _mm512_mask_mov_epi32(rounded, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC0));
  _mm256_mask_storeu_epi16(p, mask, _mm512_cvtepi32_epi16(rounded));
}

// Element access for kernels templated over the storage type: fp32 as is, bf16 widened on load
// and rounded on store.
struct Fp32Elements {
  using T = float;
  SD_AVX512 static SD_ALWAYS_INLINE __m512 load(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
  SD_AVX512 static SD_ALWAYS_INLINE void store(float* p, __mmask16 m, __m512 v) { _mm512_mask_storeu_ps(p, m, v); }
};
struct Bf16Elements {
  using T = uint16_t;
  SD_AVX512 static SD_ALWAYS_INLINE __m512 load(const uint16_t* p, __mmask16 m) { return load_bf16(p, m); }
  SD_AVX512 static SD_ALWAYS_INLINE void store(uint16_t* p, __mmask16 m, __m512 v) { store_bf16(p, m, v); }
};

}  // namespace sd::kernels::detail

#endif
