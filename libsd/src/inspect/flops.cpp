// Ref: diffusers 0.27 UNet2DConditionModel / AutoencoderKL layer structure (only the shapes).
#include "inspect/flops.h"

#include <vector>

#include "pipeline/model_source.h"
#include "sd/error.h"

namespace sd {
namespace {

// Accumulates the layers of one model at a running spatial size.
class Counter {
 public:
  explicit Counter(int64_t batch) : batch_(batch) {}
  void conv(int64_t cin, int64_t cout, int64_t k, int64_t out_h, int64_t out_w) {
    flops_.conv += 2.0 * batch_ * out_h * out_w * cin * cout * k * k;
  }
  void linear(int64_t tokens_per_sample, int64_t in, int64_t out) {
    flops_.linear += 2.0 * batch_ * tokens_per_sample * in * out;
  }
  // Scores (Nq x Nk x D per head) and scores x V: heads x head_dim = channels.
  void attention(int64_t nq, int64_t nk, int64_t channels) {
    flops_.attention += 4.0 * batch_ * nq * nk * channels;
  }
  const FlopCount& flops() const { return flops_; }

 private:
  int64_t batch_;
  FlopCount flops_;
};

// ResnetBlock2D: conv1, time projection (UNet only), conv2, 1x1 shortcut when the width changes.
void resnet(Counter& c, int64_t cin, int64_t cout, int64_t h, int64_t w, int64_t temb_dim) {
  c.conv(cin, cout, 3, h, w);
  if (temb_dim > 0) c.linear(1, temb_dim, cout);
  c.conv(cout, cout, 3, h, w);
  if (cin != cout) c.conv(cin, cout, 1, h, w);
}

// Transformer2DModel with `layers` BasicTransformerBlocks: proj_in, self-attention, cross-attention,
// GEGLU feed-forward (C -> 2 x 4C, 4C -> C), proj_out.
void transformer(Counter& c, int64_t channels, int64_t h, int64_t w, int64_t layers, int64_t context_dim,
                 int64_t context_tokens, bool linear_projection) {
  const int64_t n = h * w;
  auto projection = [&] {
    if (linear_projection) {
      c.linear(n, channels, channels);
    } else {
      c.conv(channels, channels, 1, h, w);
    }
  };
  projection();
  for (int64_t l = 0; l < layers; ++l) {
    c.linear(n, channels, 3 * channels);  // q, k, v
    c.attention(n, n, channels);
    c.linear(n, channels, channels);                      // out
    c.linear(n, channels, channels);                      // q
    c.linear(context_tokens, context_dim, 2 * channels);  // k, v from the text
    c.attention(n, context_tokens, channels);
    c.linear(n, channels, channels);  // out
    c.linear(n, channels, 8 * channels);
    c.linear(n, 4 * channels, channels);
  }
  projection();
}

int64_t down2(int64_t size) { return (size - 1) / 2 + 1; }  // 3x3, stride 2, padding 1

}  // namespace

FlopCount unet_flops(const UNetConfig& cfg, int64_t batch, int64_t latent_h, int64_t latent_w,
                     int64_t context_tokens) {
  const auto& channels = cfg.block_out_channels;
  const size_t blocks = channels.size();
  const int64_t layers = cfg.layers_per_block;
  // Transformer blocks per down block (from_json fills the list; a default-constructed config: 1).
  auto tlayers = [&](size_t b) {
    return cfg.transformer_layers_per_block.empty() ? int64_t{1} : cfg.transformer_layers_per_block.at(b);
  };
  const int64_t temb = 4 * channels[0];  // TimestepEmbedding(C0, 4 C0)
  const int64_t context_dim = cfg.cross_attention_dim;
  const bool linear_projection = cfg.use_linear_projection;

  Counter c(batch);
  c.linear(1, channels[0], temb);  // time embedding MLP
  c.linear(1, temb, temb);
  int64_t h = latent_h, w = latent_w;
  c.conv(cfg.in_channels, channels[0], 3, h, w);
  std::vector<int64_t> skips{channels[0]};
  int64_t ch = channels[0];
  for (size_t b = 0; b < blocks; ++b) {
    for (int64_t l = 0; l < layers; ++l) {
      resnet(c, ch, channels[b], h, w, temb);
      ch = channels[b];
      if (cfg.down_has_attention(b)) {
        transformer(c, ch, h, w, tlayers(b), context_dim, context_tokens, linear_projection);
      }
      skips.push_back(ch);
    }
    if (b + 1 < blocks) {
      h = down2(h);
      w = down2(w);
      c.conv(ch, ch, 3, h, w);
      skips.push_back(ch);
    }
  }
  // UNetMidBlock2DCrossAttn (the only mid block the config accepts).
  resnet(c, ch, ch, h, w, temb);
  transformer(c, ch, h, w, tlayers(blocks - 1), context_dim, context_tokens, linear_projection);
  resnet(c, ch, ch, h, w, temb);
  std::vector<int64_t> sizes_h{latent_h}, sizes_w{latent_w};  // per level, to undo the rounding of odd sizes
  for (size_t b = 1; b < blocks; ++b) {
    sizes_h.push_back(down2(sizes_h.back()));
    sizes_w.push_back(down2(sizes_w.back()));
  }
  for (size_t u = 0; u < blocks; ++u) {
    const size_t b = blocks - 1 - u;  // the matching down block
    for (int64_t l = 0; l < layers + 1; ++l) {
      const int64_t skip = skips.back();
      skips.pop_back();
      resnet(c, ch + skip, channels[b], h, w, temb);
      ch = channels[b];
      if (cfg.up_has_attention(u)) {
        transformer(c, ch, h, w, tlayers(b), context_dim, context_tokens, linear_projection);
      }
    }
    if (u + 1 < blocks) {
      h = sizes_h[b - 1];
      w = sizes_w[b - 1];
      c.conv(ch, ch, 3, h, w);  // nearest x2, then 3x3
    }
  }
  c.conv(channels[0], cfg.out_channels, 3, h, w);
  return c.flops();
}

FlopCount vae_decode_flops(const VAEConfig& cfg, int64_t batch, int64_t latent_h, int64_t latent_w) {
  const auto& channels = cfg.block_out_channels;
  const int64_t layers = cfg.layers_per_block;
  const int64_t latent = cfg.latent_channels;
  Counter c(batch);
  int64_t h = latent_h, w = latent_w;
  c.conv(latent, latent, 1, h, w);  // post_quant_conv
  int64_t ch = channels.back();
  c.conv(latent, ch, 3, h, w);
  resnet(c, ch, ch, h, w, 0);
  c.linear(h * w, ch, 3 * ch);  // single-head attention: q, k, v, out
  c.linear(h * w, ch, ch);
  c.attention(h * w, h * w, ch);
  resnet(c, ch, ch, h, w, 0);
  for (size_t u = 0; u < channels.size(); ++u) {
    const int64_t out = channels[channels.size() - 1 - u];
    for (int64_t l = 0; l < layers + 1; ++l) {
      resnet(c, ch, out, h, w, 0);
      ch = out;
    }
    if (u + 1 < channels.size()) {
      h *= 2;
      w *= 2;
      c.conv(ch, ch, 3, h, w);
    }
  }
  c.conv(channels.front(), cfg.out_channels, 3, h, w);
  return c.flops();
}

ModelFlops model_flops(const std::string& model, int64_t batch, bool guidance, int64_t height, int64_t width,
                       const std::filesystem::path& config_dir) {
  SD_CHECK(batch >= 1, "model_flops: batch must be at least 1, got ", batch);
  SD_CHECK(height >= 0 && width >= 0, "model_flops: height and width must not be negative, got ", height, "x",
           width);
  const ModelSource source = resolve_model(model, config_dir);
  const ModelConfigs& c = source.configs;
  const int64_t factor = c.vae.downscale_factor();
  // 0: the UNet's sample_size x the VAE factor, as generate() takes it.
  if (height == 0) height = c.unet.sample_size * factor;
  if (width == 0) width = c.unet.sample_size * factor;
  ModelFlops out;
  out.unet_batch = guidance ? 2 * batch : batch;
  out.latent_height = height / factor;
  out.latent_width = width / factor;
  out.context_tokens = c.text.max_position_embeddings;
  out.unet = unet_flops(c.unet, out.unet_batch, out.latent_height, out.latent_width, out.context_tokens);
  out.vae_decode = vae_decode_flops(c.vae, batch, out.latent_height, out.latent_width);
  return out;
}

}  // namespace sd
