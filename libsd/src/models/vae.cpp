#include "models/vae.h"

#include "sd/error.h"

namespace sd {
namespace nn = torch::nn;

namespace {
constexpr double kVAEEps = 1e-6;  // every VAE GroupNorm
}

VAEMidBlockImpl::VAEMidBlockImpl(int64_t channels, int64_t groups) {
  resnets = register_module("resnets", nn::ModuleList());
  attentions = register_module("attentions", nn::ModuleList());
  resnets->push_back(ResnetBlock2D(channels, channels, 0, groups, kVAEEps));
  AttentionImpl::Options attn;
  attn.query_dim = channels;
  attn.heads = 1;  // attention_head_dim = channels: one head
  attn.dim_head = channels;
  attn.qkv_bias = true;
  attn.upcast = true;  // upcast_softmax
  attn.norm_groups = groups;
  attn.norm_eps = kVAEEps;
  attentions->push_back(Attention(attn));
  resnets->push_back(ResnetBlock2D(channels, channels, 0, groups, kVAEEps));
}

torch::Tensor VAEMidBlockImpl::forward(torch::Tensor x) {
  x = at<ResnetBlock2DImpl>(resnets, 0).forward(x);
  x = at<AttentionImpl>(attentions, 0).forward_spatial(x);
  return at<ResnetBlock2DImpl>(resnets, 1).forward(x);
}

VAEBlockImpl::VAEBlockImpl(Kind kind, int64_t num_layers, int64_t in_channels, int64_t out_channels,
                           int64_t groups, bool resample) {
  resnets = register_module("resnets", nn::ModuleList());
  for (int64_t i = 0; i < num_layers; ++i) {
    resnets->push_back(ResnetBlock2D(i == 0 ? in_channels : out_channels, out_channels, 0, groups, kVAEEps));
  }
  if (resample && kind == Kind::kDown) {
    downsamplers = register_module("downsamplers", nn::ModuleList());
    downsamplers->push_back(Downsample2D(out_channels, /*padding=*/0));
  }
  if (resample && kind == Kind::kUp) {
    upsamplers = register_module("upsamplers", nn::ModuleList());
    upsamplers->push_back(Upsample2D(out_channels));
  }
}

torch::Tensor VAEBlockImpl::forward(torch::Tensor x) {
  for (size_t i = 0; i < resnets->size(); ++i) x = at<ResnetBlock2DImpl>(resnets, i).forward(x);
  if (downsamplers) x = at<Downsample2DImpl>(downsamplers, 0).forward(x);
  if (upsamplers) x = at<Upsample2DImpl>(upsamplers, 0).forward(x);
  return x;
}

EncoderImpl::EncoderImpl(const VAEConfig& c) {
  const auto& ch = c.block_out_channels;
  const size_t n = ch.size();
  conv_in = register_module("conv_in", Conv2d(nn::Conv2dOptions(c.in_channels, ch[0], 3).padding(1)));
  down_blocks = register_module("down_blocks", nn::ModuleList());
  int64_t out = ch[0];
  for (size_t i = 0; i < n; ++i) {
    const int64_t in = out;
    out = ch[i];
    down_blocks->push_back(VAEBlock(VAEBlockImpl::Kind::kDown, c.layers_per_block, in, out, c.norm_num_groups,
                                    /*resample=*/i + 1 < n));
  }
  mid_block = register_module("mid_block", VAEMidBlock(ch[n - 1], c.norm_num_groups));
  conv_norm_out =
      register_module("conv_norm_out", GroupNorm(nn::GroupNormOptions(c.norm_num_groups, ch[n - 1]).eps(kVAEEps)));
  conv_out = register_module("conv_out", Conv2d(nn::Conv2dOptions(ch[n - 1], 2 * c.latent_channels, 3).padding(1)));
}

torch::Tensor EncoderImpl::forward(const torch::Tensor& image) {
  auto x = conv_in(image);
  for (size_t i = 0; i < down_blocks->size(); ++i) x = at<VAEBlockImpl>(down_blocks, i).forward(x);
  x = mid_block(x);
  return conv_out(conv_norm_out->forward_silu(x));
}

DecoderImpl::DecoderImpl(const VAEConfig& c) {
  const auto& ch = c.block_out_channels;
  const size_t n = ch.size();
  conv_in = register_module("conv_in", Conv2d(nn::Conv2dOptions(c.latent_channels, ch[n - 1], 3).padding(1)));
  mid_block = register_module("mid_block", VAEMidBlock(ch[n - 1], c.norm_num_groups));
  up_blocks = register_module("up_blocks", nn::ModuleList());
  int64_t out = ch[n - 1];
  for (size_t i = 0; i < n; ++i) {
    const int64_t prev = out;
    out = ch[n - 1 - i];
    up_blocks->push_back(VAEBlock(VAEBlockImpl::Kind::kUp, c.layers_per_block + 1, prev, out, c.norm_num_groups,
                                  /*resample=*/i + 1 < n));
  }
  conv_norm_out =
      register_module("conv_norm_out", GroupNorm(nn::GroupNormOptions(c.norm_num_groups, ch[0]).eps(kVAEEps)));
  conv_out = register_module("conv_out", Conv2d(nn::Conv2dOptions(ch[0], c.out_channels, 3).padding(1)));
}

torch::Tensor DecoderImpl::forward(const torch::Tensor& z) {
  auto x = conv_in(z);
  x = mid_block(x);
  for (size_t i = 0; i < up_blocks->size(); ++i) x = at<VAEBlockImpl>(up_blocks, i).forward(x);
  return conv_out(conv_norm_out->forward_silu(x));
}

AutoencoderKLImpl::AutoencoderKLImpl(const VAEConfig& c, bool with_encoder) : config(c) {
  const int64_t l = c.latent_channels;
  if (with_encoder) {
    encoder = register_module("encoder", Encoder(c));
    quant_conv = register_module("quant_conv", Conv2d(nn::Conv2dOptions(2 * l, 2 * l, 1)));
  }
  decoder = register_module("decoder", Decoder(c));
  post_quant_conv = register_module("post_quant_conv", Conv2d(nn::Conv2dOptions(l, l, 1)));
}

torch::Tensor AutoencoderKLImpl::decode(const torch::Tensor& z) {
  SD_CHECK(z.dim() == 4 && z.size(1) == config.latent_channels, "VAE decode: latents must be [B, ",
           config.latent_channels, ", h, w], got ", z.sizes());
  return decoder(post_quant_conv(z));
}

LatentDistribution AutoencoderKLImpl::encode(const torch::Tensor& image) {
  SD_CHECK(encoder, "VAE encode: this AutoencoderKL was built without its encoder");
  SD_CHECK(image.dim() == 4 && image.size(1) == config.in_channels, "VAE encode: image must be [B, ",
           config.in_channels, ", H, W], got ", image.sizes());
  return LatentDistribution::from_moments(quant_conv(encoder(image)));
}

LatentDistribution LatentDistribution::from_moments(const torch::Tensor& moments) {
  auto parts = moments.chunk(2, 1);
  LatentDistribution d;
  d.mean = parts[0];
  d.logvar = torch::clamp(parts[1], -30.0, 20.0);
  d.std = torch::exp(0.5 * d.logvar);
  return d;
}

}  // namespace sd
