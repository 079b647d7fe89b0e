// Portable attention task: plain loops laid out so that the compiler vectorizes the inner ones
// (unit stride over keys for q k^T thanks to the packed K^T panels, over d for p v).
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu_attention_task.h"

namespace sd::kernels::detail {

void attention_task_fp32_generic(const AttentionTask& t) {
  const float* q = static_cast<const float*>(t.q);
  const float* kt = static_cast<const float*>(t.kt);
  const float* v = static_cast<const float*>(t.v);
  float* out = static_cast<float*>(t.out);
  const int64_t rows = t.rows, d = t.d, ld_s = t.nb16, ld_o = t.o_row_stride;

  std::fill(t.o, t.o + rows * ld_o, 0.f);
  std::fill(t.row_max, t.row_max + rows, -std::numeric_limits<float>::infinity());
  std::fill(t.row_sum, t.row_sum + rows, 0.f);

  for (int64_t k0 = 0, kb = 0; k0 < t.nk; k0 += t.key_block, ++kb) {
    const int64_t n = std::min(t.key_block, t.nk - k0);
    const float* panel = kt + kb * t.kt_panel_stride;
    for (int64_t r = 0; r < rows; ++r) {
      float* __restrict s = t.s + r * ld_s;
      const float* qr = q + r * t.q_row_stride;
      std::fill(s, s + n, 0.f);
      for (int64_t c = 0; c < d; ++c) {
        const float qc = qr[c];
        const float* __restrict krow = panel + c * ld_s;
        for (int64_t j = 0; j < n; ++j) s[j] += qc * krow[j];
      }
      float block_max = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < n; ++j) {
        s[j] *= t.scale;
        block_max = std::max(block_max, s[j]);
      }
      // Online softmax: rescale what was accumulated under the old maximum.
      const float old_max = t.row_max[r];
      const float new_max = std::max(old_max, block_max);
      const float alpha = old_max == -std::numeric_limits<float>::infinity() ? 0.f : std::exp(old_max - new_max);
      float sum = 0.f;
      for (int64_t j = 0; j < n; ++j) {
        s[j] = std::exp(s[j] - new_max);
        sum += s[j];
      }
      t.row_max[r] = new_max;
      t.row_sum[r] = t.row_sum[r] * alpha + sum;
      float* __restrict o = t.o + r * ld_o;
      if (alpha != 1.f)
        for (int64_t c = 0; c < d; ++c) o[c] *= alpha;
      for (int64_t j = 0; j < n; ++j) {
        const float p = s[j];
        const float* __restrict vrow = v + (k0 + j) * t.v_row_stride;
        for (int64_t c = 0; c < d; ++c) o[c] += p * vrow[c];
      }
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    const float inv = 1.f / t.row_sum[r];
    const float* o = t.o + r * ld_o;
    float* dst = out + r * t.out_row_stride;
    for (int64_t c = 0; c < d; ++c) dst[c] = o[c] * inv;
  }
}

}  // namespace sd::kernels::detail
