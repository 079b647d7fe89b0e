// AVX-512 attention tasks. Compiled with GCC target attributes (no special CMake flags): the driver
// calls them only after run-time CPU detection. Every load or store near a row end is masked, so
// nothing reads past a row (masked-off lanes never fault).
//
// Structure of one task (a block of query rows, every key block in turn):
//   S = scale * Q K^T     register-tiled GEMM against the packed K^T panel of the key block
//   online softmax         per row: new max, P = exp(S - max), rescale the running sum and output
//   O += P V               register-tiled GEMM against V (fp32: V in place; bf16: packed key pairs)
// and at the end out = O / sum.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "kernels/cpu_attention_task.h"

#if defined(__GNUC__) && defined(__x86_64__)
#include "kernels/avx512_math.h"

namespace sd::kernels::detail {
namespace {

// Register tiles: at most kMaxMr rows x kMaxNv vectors of 16 columns and at most kMaxAcc
// accumulators, which leaves room in the 32 zmm registers for the B vectors and a broadcast.
constexpr int kMaxMr = 8;
constexpr int kMaxNv = 6;
constexpr int kMaxAcc = 24;

// ---- fp32 GEMM tile: C[MR x NV*16] = alpha * A B  (or C += A B), K steps -------------------------
// A is read element-wise (broadcast), B row-wise; the last B/C vector is masked by `last`. HALF:
// the last vector has at most 8 columns and runs as a 256-bit vector (D = 40 is 16 + 16 + 8): on
// CPUs that split zmm work in two halves (Zen 4) that is half the cost of a masked zmm.
template <int MR, int NV, bool HALF>
SD_AVX512 void tile_f32(int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                        int64_t ldc, __mmask16 last, bool accumulate, float alpha) {
  constexpr int NF = HALF ? NV - 1 : NV;  // full zmm vectors
  const __mmask8 last8 = static_cast<__mmask8>(last);
  __m512 acc[MR][NF > 0 ? NF : 1];
  __m256 acc_half[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 8
    for (int v = 0; v < NF; ++v)
      acc[r][v] = !accumulate ? _mm512_setzero_ps()
                  : v == NV - 1 ? _mm512_maskz_loadu_ps(last, C + r * ldc + 16 * v)
                                : _mm512_loadu_ps(C + r * ldc + 16 * v);
    if constexpr (HALF)
      acc_half[r] = accumulate ? _mm256_maskz_loadu_ps(last8, C + r * ldc + 16 * NF) : _mm256_setzero_ps();
  }
  for (int64_t k = 0; k < K; ++k) {
    __m512 b[NF > 0 ? NF : 1];
    __m256 b_half;
#pragma GCC unroll 8
    for (int v = 0; v < NF; ++v)
      b[v] = v == NV - 1 ? _mm512_maskz_loadu_ps(last, B + k * ldb + 16 * v) : _mm512_loadu_ps(B + k * ldb + 16 * v);
    if constexpr (HALF) b_half = _mm256_maskz_loadu_ps(last8, B + k * ldb + 16 * NF);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512 a = _mm512_set1_ps(A[r * lda + k]);
#pragma GCC unroll 8
      for (int v = 0; v < NF; ++v) acc[r][v] = _mm512_fmadd_ps(a, b[v], acc[r][v]);
      if constexpr (HALF) acc_half[r] = _mm256_fmadd_ps(_mm512_castps512_ps256(a), b_half, acc_half[r]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha);
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 8
    for (int v = 0; v < NF; ++v) {
      const __m512 x = accumulate ? acc[r][v] : _mm512_mul_ps(acc[r][v], va);
      if (v == NV - 1)
        _mm512_mask_storeu_ps(C + r * ldc + 16 * v, last, x);
      else
        _mm512_storeu_ps(C + r * ldc + 16 * v, x);
    }
    if constexpr (HALF)
      _mm256_mask_storeu_ps(C + r * ldc + 16 * NF, last8,
                            accumulate ? acc_half[r] : _mm256_mul_ps(acc_half[r], _mm512_castps512_ps256(va)));
  }
}

// ---- bf16 GEMM tile: the same with vdpbf16ps over K2 pairs ---------------------------------------
// A: rows of bf16 with pairs (a[2p], a[2p+1]) adjacent; B: pair rows of ldb bf16, lane c of a
// vector holding the pair (b[2p][c], b[2p+1][c]).
template <int MR, int NV, bool HALF>
SD_AVX512BF16 void tile_bf16(int64_t K2, const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb,
                             float* C, int64_t ldc, __mmask16 last, bool accumulate, float alpha) {
  constexpr int NF = HALF ? NV - 1 : NV;
  const __mmask8 last8 = static_cast<__mmask8>(last);
  __m512 acc[MR][NF > 0 ? NF : 1];
  __m256 acc_half[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 8
    for (int v = 0; v < NF; ++v)
      acc[r][v] = !accumulate ? _mm512_setzero_ps()
                  : v == NV - 1 ? _mm512_maskz_loadu_ps(last, C + r * ldc + 16 * v)
                                : _mm512_loadu_ps(C + r * ldc + 16 * v);
    if constexpr (HALF)
      acc_half[r] = accumulate ? _mm256_maskz_loadu_ps(last8, C + r * ldc + 16 * NF) : _mm256_setzero_ps();
  }
  for (int64_t p = 0; p < K2; ++p) {
    __m512bh b[NF > 0 ? NF : 1];
    __m256bh b_half;
#pragma GCC unroll 8
    for (int v = 0; v < NF; ++v)
      b[v] = (__m512bh)(v == NV - 1 ? _mm512_maskz_loadu_epi32(last, B + p * ldb + 32 * v)
                                    : _mm512_loadu_si512(B + p * ldb + 32 * v));
    if constexpr (HALF) b_half = (__m256bh)_mm256_maskz_loadu_epi32(last8, B + p * ldb + 32 * NF);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      int32_t pair;
      std::memcpy(&pair, A + r * lda + 2 * p, sizeof pair);
      const __m512i ai = _mm512_set1_epi32(pair);
      const __m512bh a = (__m512bh)ai;
#pragma GCC unroll 8
      for (int v = 0; v < NF; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], a, b[v]);
      if constexpr (HALF)
        acc_half[r] = _mm256_dpbf16_ps(acc_half[r], (__m256bh)_mm512_castsi512_si256(ai), b_half);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha);
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 8
    for (int v = 0; v < NF; ++v) {
      const __m512 x = accumulate ? acc[r][v] : _mm512_mul_ps(acc[r][v], va);
      if (v == NV - 1)
        _mm512_mask_storeu_ps(C + r * ldc + 16 * v, last, x);
      else
        _mm512_storeu_ps(C + r * ldc + 16 * v, x);
    }
    if constexpr (HALF)
      _mm256_mask_storeu_ps(C + r * ldc + 16 * NF, last8,
                            accumulate ? acc_half[r] : _mm256_mul_ps(acc_half[r], _mm512_castps512_ps256(va)));
  }
}

// ---- tile tables: [HALF][MR-1][NV-1], only shapes within the accumulator budget exist ------------
using TileF32 = void (*)(int64_t, const float*, int64_t, const float*, int64_t, float*, int64_t, __mmask16,
                         bool, float);
using TileBf16 = void (*)(int64_t, const uint16_t*, int64_t, const uint16_t*, int64_t, float*, int64_t,
                          __mmask16, bool, float);

template <int MR, int NV, bool HALF>
constexpr TileF32 pick_f32() {
  if constexpr (MR * NV <= kMaxAcc) return &tile_f32<MR, NV, HALF>;
  else return nullptr;
}
template <int MR, int NV, bool HALF>
constexpr TileBf16 pick_bf16() {
  if constexpr (MR * NV <= kMaxAcc) return &tile_bf16<MR, NV, HALF>;
  else return nullptr;
}

#define SD_TILE_ROW(pick, MR, H)                                                                  \
  {                                                                                               \
    pick<MR, 1, H>(), pick<MR, 2, H>(), pick<MR, 3, H>(), pick<MR, 4, H>(), pick<MR, 5, H>(), \
        pick<MR, 6, H>()                                                                          \
  }
#define SD_TILE_TABLE(pick, H)                                                                                \
  {                                                                                                           \
    SD_TILE_ROW(pick, 1, H), SD_TILE_ROW(pick, 2, H), SD_TILE_ROW(pick, 3, H), SD_TILE_ROW(pick, 4, H), \
        SD_TILE_ROW(pick, 5, H), SD_TILE_ROW(pick, 6, H), SD_TILE_ROW(pick, 7, H), SD_TILE_ROW(pick, 8, H) \
  }
const TileF32 kTilesF32[2][kMaxMr][kMaxNv] = {SD_TILE_TABLE(pick_f32, false), SD_TILE_TABLE(pick_f32, true)};
const TileBf16 kTilesBf16[2][kMaxMr][kMaxNv] = {SD_TILE_TABLE(pick_bf16, false), SD_TILE_TABLE(pick_bf16, true)};
#undef SD_TILE_TABLE
#undef SD_TILE_ROW

// Splits N columns into chunks of at most kMaxNv vectors (evenly, so D = 80 is one 5-vector chunk
// and D = 512 six chunks of 5-6), and each chunk's rows into as many rows as the budget allows.
template <class Visit>
SD_AVX512 SD_ALWAYS_INLINE void for_each_tile(int64_t M, int64_t N, Visit&& visit) {
  const int64_t nvec = (N + 15) / 16;
  const int64_t chunks = (nvec + kMaxNv - 1) / kMaxNv;
  int64_t v0 = 0;
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t nv = (nvec - v0 + (chunks - c) - 1) / (chunks - c);
    const int64_t j0 = v0 * 16;
    const int64_t cols = std::min(nv * 16, N - j0);
    const int64_t last_cols = cols - (nv - 1) * 16;
    const __mmask16 last = lanes(last_cols);
    const int half = last_cols <= 8 ? 1 : 0;
    const int64_t mr_cap = std::min<int64_t>(kMaxMr, kMaxAcc / nv);
    for (int64_t i0 = 0; i0 < M; i0 += mr_cap) visit(i0, std::min(mr_cap, M - i0), j0, nv, half, last);
    v0 += nv;
  }
}

SD_AVX512 void gemm_f32(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                        int64_t ldb, float* C, int64_t ldc, bool accumulate, float alpha) {
  for_each_tile(M, N, [&](int64_t i0, int64_t mr, int64_t j0, int64_t nv, int half, __mmask16 last) {
    kTilesF32[half][mr - 1][nv - 1](K, A + i0 * lda, lda, B + j0, ldb, C + i0 * ldc + j0, ldc, last, accumulate, alpha);
  });
}

SD_AVX512 void gemm_bf16(int64_t M, int64_t N, int64_t K2, const uint16_t* A, int64_t lda, const uint16_t* B,
                         int64_t ldb, float* C, int64_t ldc, bool accumulate, float alpha) {
  for_each_tile(M, N, [&](int64_t i0, int64_t mr, int64_t j0, int64_t nv, int half, __mmask16 last) {
    kTilesBf16[half][mr - 1][nv - 1](K2, A + i0 * lda, lda, B + 2 * j0, ldb, C + i0 * ldc + j0, ldc, last, accumulate,
                               alpha);
  });
}

SD_AVX512 SD_ALWAYS_INLINE float row_max(const float* s, int64_t n) {
  __m512 vmax = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(s + j));
  if (j < n) vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(vmax, lanes(n - j), s + j));
  return _mm512_reduce_max_ps(vmax);
}

// Moves the running max of a row to include `block_max`; returns the factor that rescales what
// was accumulated under the previous maximum (0 before the first block).
SD_AVX512 SD_ALWAYS_INLINE float update_max(float* running_max, float block_max) {
  const float old_max = *running_max;
  *running_max = std::max(old_max, block_max);
  return old_max == -std::numeric_limits<float>::infinity() ? 0.f : std::exp(old_max - *running_max);
}

// One online-softmax step for one row (fp32 kernel): s[0, n) holds this key block's scaled scores
// and becomes exp(s - new max), zero up to the next multiple of 16. Returns the rescale factor.
SD_AVX512 float softmax_step(float* s, int64_t n, float* running_max, float* running_sum) {
  const float alpha = update_max(running_max, row_max(s, n));
  const __m512 m = _mm512_set1_ps(*running_max);
  __m512 sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    const __m512 p0 = exp_ps(_mm512_sub_ps(_mm512_loadu_ps(s + j), m));
    const __m512 p1 = exp_ps(_mm512_sub_ps(_mm512_loadu_ps(s + j + 16), m));
    _mm512_storeu_ps(s + j, p0);
    _mm512_storeu_ps(s + j + 16, p1);
    sum0 = _mm512_add_ps(sum0, p0);
    sum1 = _mm512_add_ps(sum1, p1);
  }
  for (; j < n; j += 16) {
    const __mmask16 mask = lanes(n - j);
    const __m512 p = _mm512_maskz_mov_ps(mask, exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, s + j), m)));
    _mm512_storeu_ps(s + j, p);  // s rows hold a multiple of 16 floats
    sum0 = _mm512_add_ps(sum0, p);
  }
  *running_sum = *running_sum * alpha + _mm512_reduce_add_ps(_mm512_add_ps(sum0, sum1));
  return alpha;
}

// exp for the bf16 kernel, whose probabilities are rounded to bf16 (relative 2^-9) right away:
// the same range reduction with a degree-4 Taylor polynomial, relative error < 5e-5.
SD_AVX512 SD_ALWAYS_INLINE __m512 exp_ps_for_bf16(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-104.f), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 y = _mm512_fmadd_ps(_mm512_set1_ps(1.f / 24), r, _mm512_set1_ps(1.f / 6));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(0.5f));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(y, n);
}

// The bf16 kernel's step: reads the scores in s, writes the probabilities as bf16 to p16 (zero up
// to the next multiple of 16, which pairs with V's zero padding). The sum uses the fp32 values.
SD_AVX512BF16 float softmax_step_bf16(const float* s, uint16_t* p16, int64_t n, float* running_max,
                                      float* running_sum) {
  const float alpha = update_max(running_max, row_max(s, n));
  const __m512 m = _mm512_set1_ps(*running_max);
  __m512 sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    const __m512 p0 = exp_ps_for_bf16(_mm512_sub_ps(_mm512_loadu_ps(s + j), m));
    const __m512 p1 = exp_ps_for_bf16(_mm512_sub_ps(_mm512_loadu_ps(s + j + 16), m));
    _mm512_storeu_si512(p16 + j, (__m512i)_mm512_cvtne2ps_pbh(p1, p0));
    sum0 = _mm512_add_ps(sum0, p0);
    sum1 = _mm512_add_ps(sum1, p1);
  }
  for (; j < n; j += 16) {
    const __mmask16 mask = lanes(n - j);
    const __m512 p =
        _mm512_maskz_mov_ps(mask, exp_ps_for_bf16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, s + j), m)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p16 + j), (__m256i)_mm512_cvtneps_pbh(p));
    sum0 = _mm512_add_ps(sum0, p);
  }
  *running_sum = *running_sum * alpha + _mm512_reduce_add_ps(_mm512_add_ps(sum0, sum1));
  return alpha;
}

SD_AVX512 void scale_row(float* o, int64_t n16, float alpha) {
  const __m512 a = _mm512_set1_ps(alpha);
  for (int64_t c = 0; c < n16; c += 16) _mm512_storeu_ps(o + c, _mm512_mul_ps(_mm512_loadu_ps(o + c), a));
}

SD_AVX512 void start_task(const AttentionTask& t) {
  std::memset(t.o, 0, sizeof(float) * t.rows * t.o_row_stride);
  std::fill(t.row_max, t.row_max + t.rows, -std::numeric_limits<float>::infinity());
  std::fill(t.row_sum, t.row_sum + t.rows, 0.f);
}

}  // namespace

SD_AVX512 void exp_avx512(const float* x, float* y, int64_t n) {
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 mask = lanes(n - j);
    _mm512_mask_storeu_ps(y + j, mask, exp_ps(_mm512_maskz_loadu_ps(mask, x + j)));
  }
}

SD_AVX512 void attention_task_fp32_avx512(const AttentionTask& t) {
  const float* q = static_cast<const float*>(t.q);
  const float* kt = static_cast<const float*>(t.kt);
  const float* v = static_cast<const float*>(t.v);
  const int64_t ld_o = t.o_row_stride;
  start_task(t);
  for (int64_t k0 = 0, kb = 0; k0 < t.nk; k0 += t.key_block, ++kb) {
    const int64_t n = std::min(t.key_block, t.nk - k0);
    gemm_f32(t.rows, n, t.d, q, t.q_row_stride, kt + kb * t.kt_panel_stride, t.nb16, t.s, t.nb16, false, t.scale);
    for (int64_t r = 0; r < t.rows; ++r) {
      const float alpha = softmax_step(t.s + r * t.nb16, n, t.row_max + r, t.row_sum + r);
      if (alpha != 1.f) scale_row(t.o + r * ld_o, ld_o, alpha);
    }
    gemm_f32(t.rows, t.d, n, t.s, t.nb16, v + k0 * t.v_row_stride, t.v_row_stride, t.o, ld_o, true, 1.f);
  }
  float* out = static_cast<float*>(t.out);
  for (int64_t r = 0; r < t.rows; ++r) {
    const __m512 inv = _mm512_set1_ps(1.f / t.row_sum[r]);
    for (int64_t c = 0; c < t.d; c += 16)
      _mm512_mask_storeu_ps(out + r * t.out_row_stride + c, lanes(t.d - c),
                            _mm512_mul_ps(_mm512_loadu_ps(t.o + r * ld_o + c), inv));
  }
}

SD_AVX512BF16 void attention_task_bf16_avx512(const AttentionTask& t) {
  const uint16_t* q = static_cast<const uint16_t*>(t.q);
  const uint16_t* kt = static_cast<const uint16_t*>(t.kt);
  const uint16_t* vp = static_cast<const uint16_t*>(t.v);
  const int64_t d2 = (t.d + 1) / 2, ld_q = 2 * d2, ld_o = t.o_row_stride;
  // Queries as d-pairs; an odd D gets a zero partner (the K^T panel has zeros there too).
  for (int64_t r = 0; r < t.rows; ++r) {
    std::memcpy(t.q16 + r * ld_q, q + r * t.q_row_stride, sizeof(uint16_t) * t.d);
    if (t.d & 1) t.q16[r * ld_q + t.d] = 0;
  }
  start_task(t);
  for (int64_t k0 = 0, kb = 0; k0 < t.nk; k0 += t.key_block, ++kb) {
    const int64_t n = std::min(t.key_block, t.nk - k0);
    gemm_bf16(t.rows, n, d2, t.q16, ld_q, kt + kb * t.kt_panel_stride, 2 * t.nb16, t.s, t.nb16, false, t.scale);
    for (int64_t r = 0; r < t.rows; ++r) {
      const float alpha = softmax_step_bf16(t.s + r * t.nb16, t.p16 + r * t.nb16, n, t.row_max + r, t.row_sum + r);
      if (alpha != 1.f) scale_row(t.o + r * ld_o, ld_o, alpha);
    }
    gemm_bf16(t.rows, t.d, (n + 1) / 2, t.p16, t.nb16, vp + (k0 / 2) * t.v_row_stride, t.v_row_stride, t.o, ld_o,
              true, 1.f);
  }
  uint16_t* out = static_cast<uint16_t*>(t.out);
  for (int64_t r = 0; r < t.rows; ++r) {
    const __m512 inv = _mm512_set1_ps(1.f / t.row_sum[r]);
    for (int64_t c = 0; c < t.d; c += 16)
      _mm256_mask_storeu_epi16(out + r * t.out_row_stride + c, lanes(t.d - c),
                               (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_loadu_ps(t.o + r * ld_o + c), inv)));
  }
}

}  // namespace sd::kernels::detail

#else  // not x86-64 GCC/Clang: the driver never selects these (cpu_has_avx512() is false there).

namespace sd::kernels::detail {
void attention_task_fp32_avx512(const AttentionTask& t) { attention_task_fp32_generic(t); }
void attention_task_bf16_avx512(const AttentionTask&) {}
void exp_avx512(const float* x, float* y, int64_t n) {
  for (int64_t j = 0; j < n; ++j) y[j] = std::exp(x[j]);
}
}  // namespace sd::kernels::detail

#endif
