#pragma once
// The one attention function every model uses, so the math (and any fast kernel) is in one place.
#include <torch/torch.h>

namespace sd {

struct AttentionOptions {
  bool causal = false;         // CLIP: token i sees tokens <= i
  bool upcast = false;         // compute the scores in fp32 (diffusers upcast_attention / VAE upcast_softmax)
};

// q: [B, Nq, heads*D], k/v: [B, Nk, heads*D] -> [B, Nq, heads*D]; scale 1/sqrt(D).
torch::Tensor multi_head_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                   int64_t heads, const AttentionOptions& options = {});

// Which implementation computes softmax(q k^T) v. kAuto: the fused CPU kernel where it applies
// (CPU, fp32/bf16, no causal mask), LibTorch's fused kernels on LibTorch >= 2, LibTorch ops otherwise.
// kOps: LibTorch ops only (the reference path; what a before/after benchmark compares against).
// The environment variable LIBSD_ATTENTION=ops|auto sets the initial value. Process-wide: a switch
// for benchmarks and debugging, not a per-pipeline setting.
enum class AttentionBackend { kAuto, kOps };
void set_attention_backend(AttentionBackend backend);
AttentionBackend attention_backend();

// Bounds the memory of the score matrix: queries are processed in slices of this many rows
// (0 = all at once). Per calling thread: the pipeline sets it for the duration of each of its calls
// (LoadOptions::attention_slice), so two pipelines never see each other's setting.
void set_attention_query_slice(int64_t rows);
int64_t attention_query_slice();

}  // namespace sd
