#pragma once
// AutoencoderKL (encoder + quant_conv, post_quant_conv + decoder), built from vae/config.json.
// Ref: diffusers src/diffusers/models/autoencoders/{autoencoder_kl.py, vae.py} @ 0.27
#include <torch/torch.h>

#include "models/configs.h"
#include "models/layers.h"

namespace sd {

// UNetMidBlock2D as the VAE uses it: resnet, single-head spatial self-attention, resnet.
struct VAEMidBlockImpl : torch::nn::Module {
  VAEMidBlockImpl(int64_t channels, int64_t groups);
  torch::Tensor forward(torch::Tensor x);
  torch::nn::ModuleList resnets{nullptr}, attentions{nullptr};
};
TORCH_MODULE(VAEMidBlock);

// DownEncoderBlock2D / UpDecoderBlock2D: resnets, then an optional down/upsampler.
struct VAEBlockImpl : torch::nn::Module {
  enum class Kind { kDown, kUp };
  VAEBlockImpl(Kind kind, int64_t num_layers, int64_t in_channels, int64_t out_channels, int64_t groups,
               bool resample);
  torch::Tensor forward(torch::Tensor x);
  torch::nn::ModuleList resnets{nullptr}, downsamplers{nullptr}, upsamplers{nullptr};
};
TORCH_MODULE(VAEBlock);

struct EncoderImpl : torch::nn::Module {
  explicit EncoderImpl(const VAEConfig& config);
  torch::Tensor forward(const torch::Tensor& image);  // [B,3,H,W] in [-1,1] -> moments [B,2*latent,H/f,W/f]
  Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList down_blocks{nullptr};
  VAEMidBlock mid_block{nullptr};
  GroupNorm conv_norm_out{nullptr};
};
TORCH_MODULE(Encoder);

struct DecoderImpl : torch::nn::Module {
  explicit DecoderImpl(const VAEConfig& config);
  torch::Tensor forward(const torch::Tensor& z);
  Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList up_blocks{nullptr};
  VAEMidBlock mid_block{nullptr};
  GroupNorm conv_norm_out{nullptr};
};
TORCH_MODULE(Decoder);

struct LatentDistribution {
  torch::Tensor mean, logvar, std;  // [B, latent, H/f, W/f]; logvar clamped to [-30, 20] as diffusers
  // diffusers' DiagonalGaussianDistribution of the moments [B, 2 * latent, h, w] (mean, then logvar).
  static LatentDistribution from_moments(const torch::Tensor& moments);
};

struct AutoencoderKLImpl : torch::nn::Module {
  // with_encoder false: the decoder only (text-to-image never encodes; saves memory and load time).
  explicit AutoencoderKLImpl(const VAEConfig& config, bool with_encoder = true);
  // Scaled-back latents (latents / scaling_factor) -> image in [-1, 1] (not clamped).
  torch::Tensor decode(const torch::Tensor& z);
  LatentDistribution encode(const torch::Tensor& image);
  VAEConfig config;
  Encoder encoder{nullptr};
  Decoder decoder{nullptr};
  Conv2d quant_conv{nullptr}, post_quant_conv{nullptr};
};
TORCH_MODULE(AutoencoderKL);

}  // namespace sd
