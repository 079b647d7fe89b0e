// Ref: diffusers src/diffusers/models/attention_processor.py (AttnProcessor / AttnProcessor2_0),
//      transformers models/clip/modeling_clip.py (CLIPAttention).
#include "models/attention.h"

#include <torch/version.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "kernels/cpu_attention.h"

namespace sd {
namespace {

thread_local int64_t t_query_slice = 0;
std::atomic<AttentionBackend> g_backend{[] {
  const char* env = std::getenv("LIBSD_ATTENTION");
  return env != nullptr && std::strcmp(env, "ops") == 0 ? AttentionBackend::kOps : AttentionBackend::kAuto;
}()};

// [B, N, H*D] -> [B*H, N, D]
torch::Tensor split_heads(const torch::Tensor& x, int64_t heads) {
  const auto b = x.size(0), n = x.size(1), d = x.size(2) / heads;
  return x.reshape({b, n, heads, d}).permute({0, 2, 1, 3}).reshape({b * heads, n, d});
}

// [B*H, N, D] -> [B, N, H*D]
torch::Tensor merge_heads(const torch::Tensor& x, int64_t heads) {
  const auto bh = x.size(0), n = x.size(1), d = x.size(2);
  return x.reshape({bh / heads, heads, n, d}).permute({0, 2, 1, 3}).reshape({bh / heads, n, heads * d});
}

// softmax(q k^T * scale [+ causal mask]) v for one slice of queries starting at row `q_offset`.
torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                     const AttentionOptions& options, int64_t q_offset) {
  torch::Tensor scores;
  if (options.upcast) {
    scores = torch::bmm(q.to(torch::kFloat), k.to(torch::kFloat).transpose(1, 2)).mul_(scale);
  } else {
    scores = torch::bmm(q, k.transpose(1, 2)).mul_(scale);
  }
  if (options.causal) {
    const auto nq = q.size(1), nk = k.size(1);
    auto rows = torch::arange(q_offset, q_offset + nq, torch::TensorOptions().dtype(torch::kLong)).unsqueeze(1);
    auto cols = torch::arange(nk, torch::TensorOptions().dtype(torch::kLong)).unsqueeze(0);
    scores.masked_fill_((cols > rows).to(scores.device()), -std::numeric_limits<float>::infinity());
  }
  auto probs = torch::softmax(scores, -1).to(v.scalar_type());
  return torch::bmm(probs, v);
}

}  // namespace

void set_attention_backend(AttentionBackend backend) { g_backend = backend; }
AttentionBackend attention_backend() { return g_backend; }

void set_attention_query_slice(int64_t rows) { t_query_slice = rows < 0 ? 0 : rows; }
int64_t attention_query_slice() { return t_query_slice; }

torch::Tensor multi_head_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                   int64_t heads, const AttentionOptions& options) {
  const int64_t head_dim = q.size(2) / heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  // CPU: libsd's fused kernel, on every LibTorch. Measured against LibTorch 2.11's own flash
  // attention CPU kernel (scaled_dot_product_attention, [B, heads, N, D]) on SD 1.5's 64x64
  // self-attention: 135 vs 287 ms in fp32, 77 vs 305 ms in bf16 (docs/performance.md). It never
  // materializes the score matrix (so slicing is moot) and accumulates in fp32, which is what
  // upcast asks for.
  torch::Tensor qh, kh, vh;  // [B*H, N, D], made once where a path needs them
  if (attention_backend() == AttentionBackend::kAuto && !options.causal && q.device().is_cpu()) {
    qh = split_heads(q, heads), kh = split_heads(k, heads), vh = split_heads(v, heads);
    if (kernels::cpu_attention_supported(qh, kh, vh)) return merge_heads(kernels::cpu_attention(qh, kh, vh, scale), heads);
  }
#if TORCH_VERSION_MAJOR >= 2
  // LibTorch 2.x elsewhere (CUDA; CLIP's causal attention on CPU): its fused kernels (flash /
  // memory-efficient on CUDA). Upcast (SD 2.x in half precision) asks for fp32 scores and softmax:
  // SDPA on fp32 inputs gives them without materializing the [N, N] scores the explicit path needs
  // (3.4 GB per layer at 768x768), and is at least as exact (the reference rounds the probabilities
  // to fp16 before multiplying by V; diffusers' own SDPA processor ignores upcast altogether).
  if (attention_backend() == AttentionBackend::kAuto && (!options.upcast || !q.device().is_cpu()) &&
      attention_query_slice() == 0) {
    const bool widen = options.upcast && q.scalar_type() != torch::kFloat;
    auto b = q.size(0);
    auto q4 = q.reshape({b, q.size(1), heads, head_dim}).transpose(1, 2);
    auto k4 = k.reshape({b, k.size(1), heads, head_dim}).transpose(1, 2);
    auto v4 = v.reshape({b, v.size(1), heads, head_dim}).transpose(1, 2);
    if (widen) q4 = q4.to(torch::kFloat), k4 = k4.to(torch::kFloat), v4 = v4.to(torch::kFloat);
    auto out = at::scaled_dot_product_attention(q4, k4, v4, {}, 0.0, options.causal);
    if (widen) out = out.to(q.scalar_type());
    return out.transpose(1, 2).reshape({b, q.size(1), heads * head_dim});
  }
#endif
  if (!qh.defined()) qh = split_heads(q, heads), kh = split_heads(k, heads), vh = split_heads(v, heads);
  const int64_t nq = qh.size(1);
  const int64_t slice = attention_query_slice();
  torch::Tensor out;
  if (slice <= 0 || slice >= nq) {
    out = attend(qh, kh, vh, scale, options, 0);
  } else {
    out = torch::empty_like(qh);
    for (int64_t start = 0; start < nq; start += slice) {
      const int64_t len = std::min(slice, nq - start);
      out.narrow(1, start, len).copy_(attend(qh.narrow(1, start, len), kh, vh, scale, options, start));
    }
  }
  return merge_heads(out, heads);
}

}  // namespace sd
