#pragma once
// CLIPTextModel as in transformers, built from text_encoder/config.json.
// Ref: transformers src/transformers/models/clip/modeling_clip.py @ 4.40
#include <torch/torch.h>

#include "models/configs.h"
#include "models/layers.h"

namespace sd {

struct CLIPAttentionImpl : torch::nn::Module {
  CLIPAttentionImpl(int64_t hidden, int64_t heads);
  torch::Tensor forward(const torch::Tensor& x);  // causal self-attention, [B, T, hidden]
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};
  int64_t heads;
};
TORCH_MODULE(CLIPAttention);

struct CLIPMLPImpl : torch::nn::Module {
  CLIPMLPImpl(int64_t hidden, int64_t intermediate, bool quick_gelu);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  bool quick_gelu;
};
TORCH_MODULE(CLIPMLP);

struct CLIPEncoderLayerImpl : torch::nn::Module {
  explicit CLIPEncoderLayerImpl(const CLIPTextConfig& config);
  torch::Tensor forward(const torch::Tensor& x);
  CLIPAttention self_attn{nullptr};
  LayerNorm layer_norm1{nullptr}, layer_norm2{nullptr};
  CLIPMLP mlp{nullptr};
};
TORCH_MODULE(CLIPEncoderLayer);

struct CLIPEmbeddingsImpl : torch::nn::Module {
  explicit CLIPEmbeddingsImpl(const CLIPTextConfig& config);
  torch::Tensor forward(const torch::Tensor& input_ids);
  torch::nn::Embedding token_embedding{nullptr}, position_embedding{nullptr};
  // position_ids is not registered: it is a constant (arange), absent from some checkpoints.
};
TORCH_MODULE(CLIPEmbeddings);

struct CLIPEncoderImpl : torch::nn::Module {
  explicit CLIPEncoderImpl(const CLIPTextConfig& config);
  torch::nn::ModuleList layers{nullptr};
};
TORCH_MODULE(CLIPEncoder);

struct CLIPTextTransformerImpl : torch::nn::Module {
  explicit CLIPTextTransformerImpl(const CLIPTextConfig& config);
  CLIPEmbeddings embeddings{nullptr};
  CLIPEncoder encoder{nullptr};
  LayerNorm final_layer_norm{nullptr};
};
TORCH_MODULE(CLIPTextTransformer);

struct CLIPTextOutput {
  torch::Tensor last_hidden_state;   // [B, T, hidden], after final_layer_norm
  torch::Tensor pooler_output;       // [B, hidden]: the EOS token's state
  std::vector<torch::Tensor> hidden_states;  // embeddings, then each layer's output (without final LN); only if asked
};

struct CLIPTextModelImpl : torch::nn::Module {
  explicit CLIPTextModelImpl(const CLIPTextConfig& config);
  CLIPTextOutput forward(const torch::Tensor& input_ids, bool output_hidden_states = false);
  // The conditioning the UNet sees: last hidden state (skip 0), or the hidden state `skip` layers
  // before the last with the final LayerNorm applied (skip 1 = penultimate, as SD 2.x / "clip skip").
  torch::Tensor encode(const torch::Tensor& input_ids, int skip = 0);
  CLIPTextConfig config;
  CLIPTextTransformer text_model{nullptr};
};
TORCH_MODULE(CLIPTextModel);

}  // namespace sd
