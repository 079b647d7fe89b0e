#pragma once
// Building blocks shared by the UNet and the VAE. Every register_module name is the diffusers
// state-dict name, so loading weights is a plain name match.
// Ref: diffusers src/diffusers/models/{resnet.py, downsampling.py, upsampling.py, attention.py,
//      attention_processor.py, embeddings.py, transformers/transformer_2d.py} @ 0.27
#include <torch/torch.h>

#include <optional>

#include "models/attention.h"
#include "models/conv2d.h"

namespace sd {

// Typed access to a ModuleList child, never a string lookup in forward().
template <class T>
T& at(torch::nn::ModuleList& list, size_t index) {
  return *list[index]->as<T>();
}

// `fresh + other`, computed in place in `fresh` (a temporary nobody else holds) when that gives the
// same result; saves one allocation per residual connection.
torch::Tensor add_into(torch::Tensor fresh, const torch::Tensor& other);

// SiLU computed in place in `fresh` (a temporary nobody else holds), which is returned: saves an
// allocation the size of the feature map (their page faults cost more than the arithmetic).
inline torch::Tensor silu_inplace(torch::Tensor fresh) { return torch::silu_(fresh); }

// Nearest-neighbour 2x upsampling ([B, C, H, W] -> [B, C, 2H, 2W], each pixel repeated 2x2) as one
// copy: bit-identical to upsample_nearest2d at exactly twice the size, in every dtype (LibTorch
// 1.13 has no bf16 CPU kernel for that), keeping a channels-last input channels-last.
torch::Tensor repeat_2x2(const torch::Tensor& x);

// GroupNorm that also accepts input in another dtype than its weights: under autocast
// the convolutions hand it bf16/fp16 while its weights stay fp32 (LibTorch 1.13's CPU autocast does
// not cover group_norm and fails there). Normalization then runs in the weights' dtype, as
// autocast does for norms. Same parameter names as torch::nn::GroupNorm.
struct GroupNormImpl : torch::nn::GroupNormImpl {
  using torch::nn::GroupNormImpl::GroupNormImpl;
  torch::Tensor forward(const torch::Tensor& x);
  // silu(forward(x)): one fused kernel for channels-last CPU input (kernels/group_norm_silu.h).
  torch::Tensor forward_silu(const torch::Tensor& x);
};
TORCH_MODULE(GroupNorm);

// The same for LayerNorm (the transformer blocks' norms see bf16/fp16 activations under autocast).
struct LayerNormImpl : torch::nn::LayerNormImpl {
  using torch::nn::LayerNormImpl::LayerNormImpl;
  torch::Tensor forward(const torch::Tensor& x);
};
TORCH_MODULE(LayerNorm);

// Sinusoidal embedding of (possibly fractional) timesteps: [B] -> [B, dim], computed in fp32.
torch::Tensor timestep_embedding(const torch::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos,
                                 double freq_shift);

struct TimestepEmbeddingImpl : torch::nn::Module {
  TimestepEmbeddingImpl(int64_t in_channels, int64_t time_embed_dim);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear linear_1{nullptr}, linear_2{nullptr};
};
TORCH_MODULE(TimestepEmbedding);

struct ResnetBlock2DImpl : torch::nn::Module {
  // temb_channels 0: no time embedding (the VAE).
  ResnetBlock2DImpl(int64_t in_channels, int64_t out_channels, int64_t temb_channels, int64_t groups, double eps,
                    double output_scale_factor = 1.0);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& temb = {});  // x: [B,Cin,H,W] temb: [B,Ct]
  GroupNorm norm1{nullptr}, norm2{nullptr};
  Conv2d conv1{nullptr}, conv2{nullptr}, conv_shortcut{nullptr};  // shortcut iff in != out
  torch::nn::Linear time_emb_proj{nullptr};
  double output_scale_factor;
};
TORCH_MODULE(ResnetBlock2D);

struct Downsample2DImpl : torch::nn::Module {
  // padding 1: the UNet's strided conv. padding 0: the VAE encoder's asymmetric (0,1,0,1) zero pad first.
  Downsample2DImpl(int64_t channels, int64_t padding);
  torch::Tensor forward(const torch::Tensor& x);
  Conv2d conv{nullptr};
  int64_t padding;
};
TORCH_MODULE(Downsample2D);

struct Upsample2DImpl : torch::nn::Module {
  explicit Upsample2DImpl(int64_t channels);
  // Nearest x2, or to `size` when the skip connection it meets has an odd size.
  torch::Tensor forward(const torch::Tensor& x, std::optional<std::array<int64_t, 2>> size = std::nullopt);
  Conv2d conv{nullptr};
};
TORCH_MODULE(Upsample2D);

// diffusers Attention: to_q/to_k/to_v, to_out = [Linear, Dropout]; optional group_norm + residual
// (the VAE's spatial self-attention).
struct AttentionImpl : torch::nn::Module {
  struct Options {
    int64_t query_dim = 0;
    int64_t cross_attention_dim = 0;  // 0: self-attention
    int64_t heads = 8;
    int64_t dim_head = 64;
    bool qkv_bias = false;
    bool upcast = false;
    int64_t norm_groups = 0;          // >0: GroupNorm over channels first, and a residual connection (VAE)
    double norm_eps = 1e-6;
  };
  explicit AttentionImpl(const Options& options);
  // x: [B, N, query_dim]; context: [B, M, cross_attention_dim] or undefined for self-attention.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context = {});
  // The VAE form: x [B, C, H, W] -> group_norm -> attention over H*W tokens -> + x.
  torch::Tensor forward_spatial(const torch::Tensor& x);
  GroupNorm group_norm{nullptr};
  torch::nn::Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
  torch::nn::ModuleList to_out{nullptr};
  Options options;
};
TORCH_MODULE(Attention);

// FeedForward with GEGLU: net = [GEGLU(proj: dim -> 2*inner), Dropout, Linear(inner -> dim)].
struct GEGLUImpl : torch::nn::Module {
  GEGLUImpl(int64_t dim_in, int64_t dim_out);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear proj{nullptr};
};
TORCH_MODULE(GEGLU);

struct FeedForwardImpl : torch::nn::Module {
  FeedForwardImpl(int64_t dim, int64_t mult = 4);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::ModuleList net{nullptr};
};
TORCH_MODULE(FeedForward);

struct BasicTransformerBlockImpl : torch::nn::Module {
  BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t dim_head, int64_t cross_attention_dim, bool upcast);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context);  // x: [B, HW, dim]
  LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
  Attention attn1{nullptr}, attn2{nullptr};
  FeedForward ff{nullptr};
};
TORCH_MODULE(BasicTransformerBlock);

struct Transformer2DModelImpl : torch::nn::Module {
  Transformer2DModelImpl(int64_t channels, int64_t heads, int64_t num_layers, int64_t cross_attention_dim,
                         int64_t groups, bool use_linear_projection, bool upcast);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context);  // x: [B,C,H,W]
  GroupNorm norm{nullptr};
  torch::nn::AnyModule proj_in, proj_out;  // 1x1 Conv2d, or Linear with use_linear_projection (SD 2.x)
  torch::nn::ModuleList transformer_blocks{nullptr};
  bool use_linear_projection;
};
TORCH_MODULE(Transformer2DModel);

}  // namespace sd
