#include "models/clip_text.h"

#include "models/attention.h"
#include "models/layers.h"
#include "sd/error.h"

namespace sd {
namespace nn = torch::nn;

CLIPAttentionImpl::CLIPAttentionImpl(int64_t hidden, int64_t heads) : heads(heads) {
  q_proj = register_module("q_proj", nn::Linear(hidden, hidden));
  k_proj = register_module("k_proj", nn::Linear(hidden, hidden));
  v_proj = register_module("v_proj", nn::Linear(hidden, hidden));
  out_proj = register_module("out_proj", nn::Linear(hidden, hidden));
}

torch::Tensor CLIPAttentionImpl::forward(const torch::Tensor& x) {
  AttentionOptions options;
  options.causal = true;
  return out_proj(multi_head_attention(q_proj(x), k_proj(x), v_proj(x), heads, options));
}

CLIPMLPImpl::CLIPMLPImpl(int64_t hidden, int64_t intermediate, bool quick_gelu) : quick_gelu(quick_gelu) {
  fc1 = register_module("fc1", nn::Linear(hidden, intermediate));
  fc2 = register_module("fc2", nn::Linear(intermediate, hidden));
}

torch::Tensor CLIPMLPImpl::forward(const torch::Tensor& x) {
  auto h = fc1(x);
  h = quick_gelu ? h * torch::sigmoid(1.702 * h) : torch::gelu(h);
  return fc2(h);
}

CLIPEncoderLayerImpl::CLIPEncoderLayerImpl(const CLIPTextConfig& c) {
  auto ln = [&] { return LayerNorm(nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)); };
  self_attn = register_module("self_attn", CLIPAttention(c.hidden_size, c.num_attention_heads));
  layer_norm1 = register_module("layer_norm1", ln());
  mlp = register_module("mlp", CLIPMLP(c.hidden_size, c.intermediate_size, c.hidden_act == "quick_gelu"));
  layer_norm2 = register_module("layer_norm2", ln());
}

torch::Tensor CLIPEncoderLayerImpl::forward(const torch::Tensor& x) {
  auto h = x + self_attn(layer_norm1(x));
  return h + mlp(layer_norm2(h));
}

CLIPEmbeddingsImpl::CLIPEmbeddingsImpl(const CLIPTextConfig& c) {
  token_embedding = register_module("token_embedding", nn::Embedding(c.vocab_size, c.hidden_size));
  position_embedding = register_module("position_embedding", nn::Embedding(c.max_position_embeddings, c.hidden_size));
}

torch::Tensor CLIPEmbeddingsImpl::forward(const torch::Tensor& input_ids) {
  const int64_t t = input_ids.size(1);
  SD_CHECK(t <= position_embedding->weight.size(0), "CLIP: ", t, " tokens exceed max_position_embeddings ",
           position_embedding->weight.size(0));
  auto positions = torch::arange(t, torch::TensorOptions().dtype(torch::kLong).device(input_ids.device()));
  return token_embedding(input_ids) + position_embedding(positions).unsqueeze(0);
}

CLIPEncoderImpl::CLIPEncoderImpl(const CLIPTextConfig& c) {
  layers = register_module("layers", nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(CLIPEncoderLayer(c));
}

CLIPTextTransformerImpl::CLIPTextTransformerImpl(const CLIPTextConfig& c) {
  embeddings = register_module("embeddings", CLIPEmbeddings(c));
  encoder = register_module("encoder", CLIPEncoder(c));
  final_layer_norm = register_module(
      "final_layer_norm", LayerNorm(nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)));
}

CLIPTextModelImpl::CLIPTextModelImpl(const CLIPTextConfig& c) : config(c) {
  text_model = register_module("text_model", CLIPTextTransformer(c));
}

CLIPTextOutput CLIPTextModelImpl::forward(const torch::Tensor& input_ids, bool output_hidden_states) {
  SD_CHECK(input_ids.dim() == 2, "CLIP: input_ids must be [B, T], got ", input_ids.sizes());
  SD_CHECK(input_ids.numel() == 0 ||
               (input_ids.min().item<int64_t>() >= 0 && input_ids.max().item<int64_t>() < config.vocab_size),
           "CLIP: token ids must lie in [0, ", config.vocab_size, ")");
  CLIPTextOutput out;
  auto& tm = *text_model;
  auto x = tm.embeddings(input_ids);
  if (output_hidden_states) out.hidden_states.push_back(x);
  for (size_t i = 0; i < tm.encoder->layers->size(); ++i) {
    x = at<CLIPEncoderLayerImpl>(tm.encoder->layers, i).forward(x);
    if (output_hidden_states) out.hidden_states.push_back(x);
  }
  out.last_hidden_state = tm.final_layer_norm(x);
  // transformers: configs with eos_token_id 2 predate the fix and pool at argmax(input_ids) (the
  // highest id, <|endoftext|> in CLIP's vocabulary); newer ones pool at the first eos_token_id.
  auto ids = input_ids.to(torch::kLong);
  torch::Tensor eos_pos = config.eos_token_id == 2 ? ids.argmax(-1) : (ids == config.eos_token_id).to(torch::kInt).argmax(-1);
  auto rows = torch::arange(ids.size(0), ids.options());
  out.pooler_output = out.last_hidden_state.index({rows, eos_pos.to(ids.device())});
  return out;
}

torch::Tensor CLIPTextModelImpl::encode(const torch::Tensor& input_ids, int skip) {
  if (skip <= 0) return forward(input_ids).last_hidden_state;
  SD_CHECK(skip < config.num_hidden_layers, "CLIP: cannot skip ", skip, " of ", config.num_hidden_layers, " layers");
  auto out = forward(input_ids, /*output_hidden_states=*/true);
  const auto& hs = out.hidden_states;
  return text_model->final_layer_norm(hs[hs.size() - 1 - skip]);
}

}  // namespace sd
