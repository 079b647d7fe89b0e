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

// Bounds the memory of the score matrix: queries are processed in slices of this many rows
// (0 = all at once). Process-wide; set by the pipeline's attention_slice option.
void set_attention_query_slice(int64_t rows);
int64_t attention_query_slice();

}  // namespace sd
