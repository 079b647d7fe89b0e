#include "models/unet.h"

#include "sd/error.h"

namespace sd {
namespace nn = torch::nn;

namespace {
Transformer2DModel make_transformer(const UNetConfig& c, int64_t channels, int64_t heads, int64_t layers) {
  return Transformer2DModel(channels, heads, layers, c.cross_attention_dim, c.norm_num_groups,
                            c.use_linear_projection, c.upcast_attention);
}
}  // namespace

DownBlockImpl::DownBlockImpl(const UNetConfig& c, size_t index, int64_t in_channels, int64_t out_channels,
                             int64_t temb_channels) {
  resnets = register_module("resnets", nn::ModuleList());
  const bool with_attention = c.down_has_attention(index);
  if (with_attention) attentions = register_module("attentions", nn::ModuleList());
  for (int64_t i = 0; i < c.layers_per_block; ++i) {
    resnets->push_back(ResnetBlock2D(i == 0 ? in_channels : out_channels, out_channels, temb_channels,
                                     c.norm_num_groups, c.norm_eps));
    if (with_attention) {
      attentions->push_back(
          make_transformer(c, out_channels, c.num_heads[index], c.transformer_layers_per_block[index]));
    }
  }
  if (index + 1 < c.block_out_channels.size()) {
    downsamplers = register_module("downsamplers", nn::ModuleList());
    downsamplers->push_back(Downsample2D(out_channels, c.downsample_padding));
  }
}

torch::Tensor DownBlockImpl::forward(torch::Tensor x, const torch::Tensor& temb, const torch::Tensor& context,
                                     std::vector<torch::Tensor>& skips) {
  for (size_t i = 0; i < resnets->size(); ++i) {
    x = at<ResnetBlock2DImpl>(resnets, i).forward(x, temb);
    if (attentions) x = at<Transformer2DModelImpl>(attentions, i).forward(x, context);
    skips.push_back(x);
  }
  if (downsamplers) {
    x = at<Downsample2DImpl>(downsamplers, 0).forward(x);
    skips.push_back(x);
  }
  return x;
}

MidBlockImpl::MidBlockImpl(const UNetConfig& c, int64_t channels, int64_t temb_channels) {
  resnets = register_module("resnets", nn::ModuleList());
  attentions = register_module("attentions", nn::ModuleList());
  const size_t last = c.block_out_channels.size() - 1;
  for (int i = 0; i < 2; ++i) {
    resnets->push_back(ResnetBlock2D(channels, channels, temb_channels, c.norm_num_groups, c.norm_eps,
                                     c.mid_block_scale_factor));
  }
  attentions->push_back(make_transformer(c, channels, c.num_heads[last], c.transformer_layers_per_block[last]));
}

torch::Tensor MidBlockImpl::forward(torch::Tensor x, const torch::Tensor& temb, const torch::Tensor& context) {
  x = at<ResnetBlock2DImpl>(resnets, 0).forward(x, temb);
  x = at<Transformer2DModelImpl>(attentions, 0).forward(x, context);
  return at<ResnetBlock2DImpl>(resnets, 1).forward(x, temb);
}

UpBlockImpl::UpBlockImpl(const UNetConfig& c, size_t index, int64_t in_channels, int64_t prev_output_channels,
                         int64_t out_channels, int64_t temb_channels) {
  const size_t n = c.block_out_channels.size();
  const size_t mirrored = n - 1 - index;  // the down block this one mirrors: heads and layers come reversed
  resnets = register_module("resnets", nn::ModuleList());
  const bool with_attention = c.up_has_attention(index);
  if (with_attention) attentions = register_module("attentions", nn::ModuleList());
  const int64_t num_layers = c.layers_per_block + 1;
  for (int64_t i = 0; i < num_layers; ++i) {
    const int64_t skip_channels = (i == num_layers - 1) ? in_channels : out_channels;
    const int64_t resnet_in = (i == 0) ? prev_output_channels : out_channels;
    resnets->push_back(
        ResnetBlock2D(resnet_in + skip_channels, out_channels, temb_channels, c.norm_num_groups, c.norm_eps));
    if (with_attention) {
      attentions->push_back(
          make_transformer(c, out_channels, c.num_heads[mirrored], c.transformer_layers_per_block[mirrored]));
    }
  }
  if (index + 1 < n) {
    upsamplers = register_module("upsamplers", nn::ModuleList());
    upsamplers->push_back(Upsample2D(out_channels));
  }
}

torch::Tensor UpBlockImpl::forward(torch::Tensor x, const torch::Tensor& temb, const torch::Tensor& context,
                                   std::vector<torch::Tensor>& skips) {
  for (size_t i = 0; i < resnets->size(); ++i) {
    x = torch::cat({x, skips.back()}, 1);
    skips.pop_back();
    x = at<ResnetBlock2DImpl>(resnets, i).forward(x, temb);
    if (attentions) x = at<Transformer2DModelImpl>(attentions, i).forward(x, context);
  }
  if (upsamplers) {
    // The next skip has the size this block must reach (it differs from 2x when a size was odd).
    std::array<int64_t, 2> size{skips.back().size(2), skips.back().size(3)};
    x = at<Upsample2DImpl>(upsamplers, 0).forward(x, size);
  }
  return x;
}

UNet2DConditionModelImpl::UNet2DConditionModelImpl(const UNetConfig& c) : config(c) {
  const auto& ch = c.block_out_channels;
  const size_t n = ch.size();
  const int64_t temb = ch[0] * 4;
  conv_in = register_module("conv_in", Conv2d(nn::Conv2dOptions(c.in_channels, ch[0], 3).padding(1)));
  time_embedding = register_module("time_embedding", TimestepEmbedding(ch[0], temb));
  down_blocks = register_module("down_blocks", nn::ModuleList());
  int64_t out = ch[0];
  for (size_t i = 0; i < n; ++i) {
    const int64_t in = out;
    out = ch[i];
    down_blocks->push_back(DownBlock(c, i, in, out, temb));
  }
  mid_block = register_module("mid_block", MidBlock(c, ch[n - 1], temb));
  up_blocks = register_module("up_blocks", nn::ModuleList());
  out = ch[n - 1];
  for (size_t i = 0; i < n; ++i) {
    const int64_t prev = out;
    out = ch[n - 1 - i];
    const int64_t in = ch[n - 1 - std::min(i + 1, n - 1)];
    up_blocks->push_back(UpBlock(c, i, in, prev, out, temb));
  }
  conv_norm_out = register_module("conv_norm_out", GroupNorm(nn::GroupNormOptions(c.norm_num_groups, ch[0]).eps(c.norm_eps)));
  conv_out = register_module("conv_out", Conv2d(nn::Conv2dOptions(ch[0], c.out_channels, 3).padding(1)));
}

torch::Tensor UNet2DConditionModelImpl::forward(const torch::Tensor& sample, const torch::Tensor& timestep,
                                                const torch::Tensor& context) {
  SD_CHECK(sample.dim() == 4 && sample.size(1) == config.in_channels, "UNet: sample must be [B, ",
           config.in_channels, ", h, w], got ", sample.sizes());
  SD_CHECK(context.dim() == 3 && context.size(0) == sample.size(0) && context.size(2) == config.cross_attention_dim,
           "UNet: encoder_hidden_states must be [", sample.size(0), ", tokens, ", config.cross_attention_dim,
           "], got ", context.sizes());
  const int64_t batch = sample.size(0);
  auto t = timestep.to(sample.device());
  SD_CHECK(t.dim() == 0 || (t.dim() == 1 && (t.size(0) == batch || t.size(0) == 1)),
           "UNet: timestep must be a scalar or have one entry per batch element (", batch, "), got ", t.sizes());
  t = t.reshape({-1}).expand({batch});
  auto t_emb = timestep_embedding(t, config.block_out_channels[0], config.flip_sin_to_cos, config.freq_shift);
  auto emb = time_embedding(t_emb.to(sample.scalar_type()));

  auto x = conv_in(sample);
  std::vector<torch::Tensor> skips{x};
  for (size_t i = 0; i < down_blocks->size(); ++i) {
    x = at<DownBlockImpl>(down_blocks, i).forward(x, emb, context, skips);
  }
  x = mid_block(x, emb, context);
  for (size_t i = 0; i < up_blocks->size(); ++i) {
    x = at<UpBlockImpl>(up_blocks, i).forward(x, emb, context, skips);
  }
  return conv_out(conv_norm_out->forward_silu(x));
}

}  // namespace sd
