#include "models/layers.h"

#include <ATen/ExpandUtils.h>
#include <torch/version.h>

#include <cmath>

#include "kernels/geglu.h"
#include "kernels/group_norm_silu.h"

namespace sd {
namespace nn = torch::nn;

torch::Tensor timestep_embedding(const torch::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos,
                                 double freq_shift) {
  const int64_t half = dim / 2;
  auto f32 = torch::TensorOptions().dtype(torch::kFloat).device(timesteps.device());
  auto exponent = torch::arange(0, half, f32) * static_cast<float>(-std::log(10000.0));
  exponent = exponent / static_cast<float>(half - freq_shift);
  auto freqs = torch::exp(exponent);
  auto args = timesteps.to(torch::kFloat).unsqueeze(1) * freqs.unsqueeze(0);  // [B, half]
  auto emb = flip_sin_to_cos ? torch::cat({torch::cos(args), torch::sin(args)}, -1)
                             : torch::cat({torch::sin(args), torch::cos(args)}, -1);
  if (dim % 2 == 1) emb = torch::constant_pad_nd(emb, {0, 1});
  return emb;
}

torch::Tensor add_into(torch::Tensor fresh, const torch::Tensor& other) {
  // In place only where the result is what `fresh + other` would be: same dtype (no promotion,
  // which autocast relies on) and `other` broadcasts into `fresh`'s shape.
  if (fresh.scalar_type() != other.scalar_type() || at::infer_size(fresh.sizes(), other.sizes()) != fresh.sizes()) {
    return fresh + other;
  }
  return fresh.add_(other);
}

torch::Tensor GroupNormImpl::forward(const torch::Tensor& x) {
  if (x.scalar_type() == weight.scalar_type()) return torch::nn::GroupNormImpl::forward(x);
  return torch::group_norm(x.to(weight.scalar_type()), options.num_groups(), weight, bias, options.eps());
}

torch::Tensor GroupNormImpl::forward_silu(const torch::Tensor& x) {
  if (kernels::group_norm_silu_pays_off(x, options.num_groups(), weight, bias)) {
    return kernels::group_norm_silu(x, options.num_groups(), weight, bias, options.eps());
  }
  return silu_inplace(forward(x));
}

torch::Tensor LayerNormImpl::forward(const torch::Tensor& x) {
#if TORCH_VERSION_MAJOR < 2
  // LibTorch 1.13's CPU layer_norm has no vectorized bf16 kernel: [2, 4096, 320] takes 14.7 ms in
  // bf16 and 6.7 ms converted to fp32 and back (docs/performance.md). It accumulates in fp32 either way.
  if (x.scalar_type() == torch::kBFloat16 && weight.scalar_type() == torch::kBFloat16 && x.device().is_cpu()) {
    return torch::layer_norm(x.to(torch::kFloat), options.normalized_shape(), weight.to(torch::kFloat),
                             bias.to(torch::kFloat), options.eps())
        .to(torch::kBFloat16);
  }
#endif
  if (x.scalar_type() == weight.scalar_type()) return torch::nn::LayerNormImpl::forward(x);
  return torch::layer_norm(x.to(weight.scalar_type()), options.normalized_shape(), weight, bias, options.eps());
}

TimestepEmbeddingImpl::TimestepEmbeddingImpl(int64_t in_channels, int64_t time_embed_dim) {
  linear_1 = register_module("linear_1", nn::Linear(in_channels, time_embed_dim));
  linear_2 = register_module("linear_2", nn::Linear(time_embed_dim, time_embed_dim));
}

torch::Tensor TimestepEmbeddingImpl::forward(const torch::Tensor& x) { return linear_2(torch::silu(linear_1(x))); }

ResnetBlock2DImpl::ResnetBlock2DImpl(int64_t in_channels, int64_t out_channels, int64_t temb_channels,
                                     int64_t groups, double eps, double output_scale_factor)
    : output_scale_factor(output_scale_factor) {
  norm1 = register_module("norm1", GroupNorm(nn::GroupNormOptions(groups, in_channels).eps(eps)));
  conv1 = register_module("conv1", Conv2d(nn::Conv2dOptions(in_channels, out_channels, 3).padding(1)));
  if (temb_channels > 0) time_emb_proj = register_module("time_emb_proj", nn::Linear(temb_channels, out_channels));
  norm2 = register_module("norm2", GroupNorm(nn::GroupNormOptions(groups, out_channels).eps(eps)));
  conv2 = register_module("conv2", Conv2d(nn::Conv2dOptions(out_channels, out_channels, 3).padding(1)));
  if (in_channels != out_channels) {
    conv_shortcut = register_module("conv_shortcut", Conv2d(nn::Conv2dOptions(in_channels, out_channels, 1)));
  }
}

torch::Tensor ResnetBlock2DImpl::forward(const torch::Tensor& x, const torch::Tensor& temb) {
  auto h = conv1(norm1->forward_silu(x));
  if (time_emb_proj && temb.defined()) {
    h = add_into(h, time_emb_proj(torch::silu(temb)).unsqueeze(-1).unsqueeze(-1));
  }
  h = conv2(norm2->forward_silu(h));  // dropout: identity at inference
  auto out = add_into(h, conv_shortcut ? conv_shortcut(x) : x);
  if (output_scale_factor != 1.0) out = out.div_(output_scale_factor);
  return out;
}

Downsample2DImpl::Downsample2DImpl(int64_t channels, int64_t padding) : padding(padding) {
  conv = register_module("conv", Conv2d(nn::Conv2dOptions(channels, channels, 3).stride(2).padding(padding)));
}

torch::Tensor Downsample2DImpl::forward(const torch::Tensor& x) {
  if (padding == 0) return conv(torch::constant_pad_nd(x, {0, 1, 0, 1}, 0));
  return conv(x);
}

torch::Tensor repeat_2x2(const torch::Tensor& x) {
  const auto b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  if (x.suggest_memory_format() == torch::MemoryFormat::ChannelsLast) {
    auto nhwc = x.permute({0, 2, 3, 1});  // contiguous [B, H, W, C]
    return nhwc.unsqueeze(2).unsqueeze(4).expand({b, h, 2, w, 2, c}).reshape({b, 2 * h, 2 * w, c}).permute({0, 3, 1, 2});
  }
  return x.unsqueeze(3).unsqueeze(5).expand({b, c, h, 2, w, 2}).reshape({b, c, 2 * h, 2 * w});
}

Upsample2DImpl::Upsample2DImpl(int64_t channels) {
  conv = register_module("conv", Conv2d(nn::Conv2dOptions(channels, channels, 3).padding(1)));
}

torch::Tensor Upsample2DImpl::forward(const torch::Tensor& x, std::optional<std::array<int64_t, 2>> size) {
  std::vector<int64_t> out_size = size ? std::vector<int64_t>{(*size)[0], (*size)[1]}
                                       : std::vector<int64_t>{x.size(2) * 2, x.size(3) * 2};
  if (out_size[0] == 2 * x.size(2) && out_size[1] == 2 * x.size(3)) return conv(repeat_2x2(x));
  // Nearest upsampling in bf16 is not implemented on every LibTorch CPU build: go through fp32 there.
  torch::Tensor up;
  if (x.scalar_type() == torch::kBFloat16 && x.device().is_cpu()) {
    up = torch::upsample_nearest2d(x.to(torch::kFloat), out_size).to(x.scalar_type());
  } else {
    up = torch::upsample_nearest2d(x, out_size);
  }
  return conv(up);
}

AttentionImpl::AttentionImpl(const Options& opts) : options(opts) {
  const int64_t inner = opts.heads * opts.dim_head;
  const int64_t context_dim = opts.cross_attention_dim > 0 ? opts.cross_attention_dim : opts.query_dim;
  if (opts.norm_groups > 0) {
    group_norm = register_module(
        "group_norm", GroupNorm(nn::GroupNormOptions(opts.norm_groups, opts.query_dim).eps(opts.norm_eps)));
  }
  to_q = register_module("to_q", nn::Linear(nn::LinearOptions(opts.query_dim, inner).bias(opts.qkv_bias)));
  to_k = register_module("to_k", nn::Linear(nn::LinearOptions(context_dim, inner).bias(opts.qkv_bias)));
  to_v = register_module("to_v", nn::Linear(nn::LinearOptions(context_dim, inner).bias(opts.qkv_bias)));
  to_out = register_module("to_out", nn::ModuleList());
  to_out->push_back(nn::Linear(inner, opts.query_dim));
  to_out->push_back(nn::Identity());  // dropout placeholder keeps "to_out.0" aligned
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& context) {
  const auto& ctx = context.defined() ? context : x;
  AttentionOptions attn;
  attn.upcast = options.upcast;
  auto out = multi_head_attention(to_q(x), to_k(ctx), to_v(ctx), options.heads, attn);
  return at<nn::LinearImpl>(to_out, 0).forward(out);
}

torch::Tensor AttentionImpl::forward_spatial(const torch::Tensor& x) {
  const auto b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  auto hs = group_norm ? group_norm(x) : x;
  hs = hs.reshape({b, c, h * w}).transpose(1, 2);  // [B, HW, C]
  AttentionOptions attn;
  attn.upcast = options.upcast;
  auto out = multi_head_attention(to_q(hs), to_k(hs), to_v(hs), options.heads, attn);
  out = at<nn::LinearImpl>(to_out, 0).forward(out);
  return out.transpose(1, 2).reshape({b, c, h, w}) + x;
}

GEGLUImpl::GEGLUImpl(int64_t dim_in, int64_t dim_out) {
  proj = register_module("proj", nn::Linear(dim_in, dim_out * 2));
}

torch::Tensor GEGLUImpl::forward(const torch::Tensor& x) {
  auto projected = proj(x);
  if (kernels::geglu_pays_off(projected)) return kernels::geglu(projected);  // one fused pass on the CPU
  auto parts = projected.chunk(2, -1);
  return torch::gelu(parts[1]).mul_(parts[0]);  // exact (erf) gelu, as diffusers; product in place
}

FeedForwardImpl::FeedForwardImpl(int64_t dim, int64_t mult) {
  net = register_module("net", nn::ModuleList());
  net->push_back(GEGLU(dim, dim * mult));
  net->push_back(nn::Identity());  // dropout placeholder: "net.2" is the output projection
  net->push_back(nn::Linear(dim * mult, dim));
}

torch::Tensor FeedForwardImpl::forward(const torch::Tensor& x) {
  return at<nn::LinearImpl>(net, 2).forward(at<GEGLUImpl>(net, 0).forward(x));
}

BasicTransformerBlockImpl::BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t dim_head,
                                                     int64_t cross_attention_dim, bool upcast) {
  auto ln = [&] { return LayerNorm(nn::LayerNormOptions({dim}).eps(1e-5)); };
  AttentionImpl::Options self;
  self.query_dim = dim;
  self.heads = heads;
  self.dim_head = dim_head;
  self.upcast = upcast;
  AttentionImpl::Options cross = self;
  cross.cross_attention_dim = cross_attention_dim;
  norm1 = register_module("norm1", ln());
  attn1 = register_module("attn1", Attention(self));
  norm2 = register_module("norm2", ln());
  attn2 = register_module("attn2", Attention(cross));
  norm3 = register_module("norm3", ln());
  ff = register_module("ff", FeedForward(dim));
}

torch::Tensor BasicTransformerBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& context) {
  auto h = add_into(attn1(norm1(x)), x);
  h = add_into(attn2(norm2(h), context), h);
  return add_into(ff(norm3(h)), h);
}

Transformer2DModelImpl::Transformer2DModelImpl(int64_t channels, int64_t heads, int64_t num_layers,
                                               int64_t cross_attention_dim, int64_t groups,
                                               bool use_linear_projection, bool upcast)
    : use_linear_projection(use_linear_projection) {
  const int64_t inner = channels;  // heads * head_dim == channels in this family
  norm = register_module("norm", GroupNorm(nn::GroupNormOptions(groups, channels).eps(1e-6)));
  if (use_linear_projection) {
    proj_in = nn::AnyModule(register_module("proj_in", nn::Linear(channels, inner)));
  } else {
    proj_in = nn::AnyModule(register_module("proj_in", Conv2d(nn::Conv2dOptions(channels, inner, 1))));
  }
  transformer_blocks = register_module("transformer_blocks", nn::ModuleList());
  for (int64_t i = 0; i < num_layers; ++i) {
    transformer_blocks->push_back(BasicTransformerBlock(inner, heads, inner / heads, cross_attention_dim, upcast));
  }
  if (use_linear_projection) {
    proj_out = nn::AnyModule(register_module("proj_out", nn::Linear(inner, channels)));
  } else {
    proj_out = nn::AnyModule(register_module("proj_out", Conv2d(nn::Conv2dOptions(inner, channels, 1))));
  }
}

torch::Tensor Transformer2DModelImpl::forward(const torch::Tensor& x, const torch::Tensor& context) {
  const auto b = x.size(0), h = x.size(2), w = x.size(3);
  auto hs = norm(x);
  int64_t inner = 0;
  if (use_linear_projection) {
    inner = hs.size(1);
    hs = proj_in.forward(hs.permute({0, 2, 3, 1}).reshape({b, h * w, inner}));
  } else {
    hs = proj_in.forward(hs);
    inner = hs.size(1);
    hs = hs.permute({0, 2, 3, 1}).reshape({b, h * w, inner});
  }
  for (size_t i = 0; i < transformer_blocks->size(); ++i) {
    hs = at<BasicTransformerBlockImpl>(transformer_blocks, i).forward(hs, context);
  }
  if (use_linear_projection) {
    hs = proj_out.forward(hs).reshape({b, h, w, inner}).permute({0, 3, 1, 2});
  } else {
    hs = proj_out.forward(hs.reshape({b, h, w, inner}).permute({0, 3, 1, 2}));
  }
  return add_into(hs, x);
}

}  // namespace sd
