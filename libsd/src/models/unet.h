#pragma once
// UNet2DConditionModel for the SD 1.x/2.x family, built from unet/config.json.
// Ref: diffusers src/diffusers/models/unets/{unet_2d_condition.py, unet_2d_blocks.py} @ 0.27
#include <torch/torch.h>

#include "models/configs.h"
#include "models/layers.h"

namespace sd {

// CrossAttnDownBlock2D (with attentions) or DownBlock2D (without).
struct DownBlockImpl : torch::nn::Module {
  DownBlockImpl(const UNetConfig& config, size_t index, int64_t in_channels, int64_t out_channels,
                int64_t temb_channels);
  // Appends each resnet(+attention) output and the downsampled output to `skips`.
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& temb, const torch::Tensor& context,
                        std::vector<torch::Tensor>& skips);
  torch::nn::ModuleList resnets{nullptr}, attentions{nullptr}, downsamplers{nullptr};
};
TORCH_MODULE(DownBlock);

struct MidBlockImpl : torch::nn::Module {  // UNetMidBlock2DCrossAttn
  MidBlockImpl(const UNetConfig& config, int64_t channels, int64_t temb_channels);
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& temb, const torch::Tensor& context);
  torch::nn::ModuleList resnets{nullptr}, attentions{nullptr};
};
TORCH_MODULE(MidBlock);

// CrossAttnUpBlock2D or UpBlock2D.
struct UpBlockImpl : torch::nn::Module {
  UpBlockImpl(const UNetConfig& config, size_t index, int64_t in_channels, int64_t prev_output_channels,
              int64_t out_channels, int64_t temb_channels);
  // Consumes skips from the back; upsamples to the size of the next skip (odd sizes).
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& temb, const torch::Tensor& context,
                        std::vector<torch::Tensor>& skips);
  torch::nn::ModuleList resnets{nullptr}, attentions{nullptr}, upsamplers{nullptr};
};
TORCH_MODULE(UpBlock);

struct UNet2DConditionModelImpl : torch::nn::Module {
  explicit UNet2DConditionModelImpl(const UNetConfig& config);
  // sample: [B, in_channels, h, w]; timestep: 0-d or [B], int or float; context: [B, 77, cross_attention_dim].
  torch::Tensor forward(const torch::Tensor& sample, const torch::Tensor& timestep, const torch::Tensor& context);

  UNetConfig config;
  Conv2d conv_in{nullptr}, conv_out{nullptr};
  TimestepEmbedding time_embedding{nullptr};
  torch::nn::ModuleList down_blocks{nullptr}, up_blocks{nullptr};
  MidBlock mid_block{nullptr};
  GroupNorm conv_norm_out{nullptr};
};
TORCH_MODULE(UNet2DConditionModel);

}  // namespace sd
