// Ref: diffusers 0.27 UNet2DConditionModel / AutoencoderKL layer structure (only the shapes).
#include "flops.h"

#include <fstream>
#include <vector>

#include "sd/error.h"
#include "sd/pipeline.h"

namespace sd_bench {

namespace {

// An int or a per-block list in diffusers configs (attention_head_dim, transformer_layers_per_block, ...).
std::vector<int64_t> per_block(const nlohmann::json& config, const char* key, size_t blocks, int64_t fallback) {
  if (!config.contains(key) || config[key].is_null()) return std::vector<int64_t>(blocks, fallback);
  const auto& value = config[key];
  if (value.is_number_integer()) return std::vector<int64_t>(blocks, value.get<int64_t>());
  auto list = value.get<std::vector<int64_t>>();
  SD_CHECK(list.size() == blocks, "UNet config: ", key, " has ", list.size(), " entries, expected ", blocks);
  return list;
}

int64_t int_or(const nlohmann::json& config, const char* key, int64_t fallback) {
  return config.contains(key) && config[key].is_number_integer() ? config[key].get<int64_t>() : fallback;
}

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
  void attention(int64_t nq, int64_t nk, int64_t channels) { flops_.attention += 4.0 * batch_ * nq * nk * channels; }
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
    c.linear(n, channels, channels);  // out
    c.linear(n, channels, channels);  // q
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

FlopCount unet_flops(const nlohmann::json& cfg, int64_t batch, int64_t latent_h, int64_t latent_w,
                     int64_t context_tokens) {
  const auto channels = cfg.at("block_out_channels").get<std::vector<int64_t>>();
  const auto down_types = cfg.at("down_block_types").get<std::vector<std::string>>();
  const auto up_types = cfg.at("up_block_types").get<std::vector<std::string>>();
  const size_t blocks = channels.size();
  SD_CHECK(blocks >= 1 && down_types.size() == blocks && up_types.size() == blocks,
           "UNet config: block_out_channels, down_block_types and up_block_types must have the same length");
  const auto layers = per_block(cfg, "layers_per_block", blocks, 2);
  const auto tlayers = per_block(cfg, "transformer_layers_per_block", blocks, 1);
  const int64_t context_dim = int_or(cfg, "cross_attention_dim", 768);
  const bool linear_projection = cfg.value("use_linear_projection", false);
  const int64_t temb = int_or(cfg, "time_embedding_dim", 4 * channels[0]);
  const int64_t in_ch = int_or(cfg, "in_channels", 4), out_ch = int_or(cfg, "out_channels", 4);
  const int64_t k_in = int_or(cfg, "conv_in_kernel", 3), k_out = int_or(cfg, "conv_out_kernel", 3);
  auto has_attention = [](const std::string& type) { return type.rfind("CrossAttn", 0) == 0; };

  Counter c(batch);
  c.linear(1, channels[0], temb);  // time embedding MLP
  c.linear(1, temb, temb);
  int64_t h = latent_h, w = latent_w;
  c.conv(in_ch, channels[0], k_in, h, w);
  std::vector<int64_t> skips{channels[0]};
  int64_t ch = channels[0];
  for (size_t b = 0; b < blocks; ++b) {
    for (int64_t l = 0; l < layers[b]; ++l) {
      resnet(c, ch, channels[b], h, w, temb);
      ch = channels[b];
      if (has_attention(down_types[b])) transformer(c, ch, h, w, tlayers[b], context_dim, context_tokens, linear_projection);
      skips.push_back(ch);
    }
    if (b + 1 < blocks) {
      h = down2(h);
      w = down2(w);
      c.conv(ch, ch, 3, h, w);
      skips.push_back(ch);
    }
  }
  const bool mid = !cfg.contains("mid_block_type") || !cfg["mid_block_type"].is_null();
  if (mid) {
    resnet(c, ch, ch, h, w, temb);
    transformer(c, ch, h, w, tlayers.back(), context_dim, context_tokens, linear_projection);
    resnet(c, ch, ch, h, w, temb);
  }
  std::vector<int64_t> sizes_h{latent_h}, sizes_w{latent_w};  // per level, to undo the rounding of odd sizes
  for (size_t b = 1; b < blocks; ++b) {
    sizes_h.push_back(down2(sizes_h.back()));
    sizes_w.push_back(down2(sizes_w.back()));
  }
  for (size_t u = 0; u < blocks; ++u) {
    const size_t b = blocks - 1 - u;  // the matching down block
    for (int64_t l = 0; l < layers[b] + 1; ++l) {
      const int64_t skip = skips.back();
      skips.pop_back();
      resnet(c, ch + skip, channels[b], h, w, temb);
      ch = channels[b];
      if (has_attention(up_types[u])) transformer(c, ch, h, w, tlayers[b], context_dim, context_tokens, linear_projection);
    }
    if (u + 1 < blocks) {
      h = sizes_h[b - 1];
      w = sizes_w[b - 1];
      c.conv(ch, ch, 3, h, w);  // nearest x2, then 3x3
    }
  }
  c.conv(channels[0], out_ch, k_out, h, w);
  return c.flops();
}

FlopCount vae_decode_flops(const nlohmann::json& cfg, int64_t batch, int64_t latent_h, int64_t latent_w) {
  const auto channels = cfg.at("block_out_channels").get<std::vector<int64_t>>();
  SD_CHECK(!channels.empty(), "VAE config: block_out_channels is empty");
  const int64_t layers = int_or(cfg, "layers_per_block", 2);
  const int64_t latent = int_or(cfg, "latent_channels", 4), out_ch = int_or(cfg, "out_channels", 3);
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
  c.conv(channels.front(), out_ch, 3, h, w);
  return c.flops();
}

nlohmann::json read_json_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  SD_CHECK(in, "cannot read ", path.string());
  try {
    return nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    SD_FAIL(path.string(), ": invalid JSON (", e.what(), ")");
  }
}

std::filesystem::path model_config_dir(const std::string& model) {
  const std::string random = "random:";
  if (model.rfind(random, 0) == 0) {
    const std::string rest = model.substr(random.size());
    if (rest == "sd-v1-5") return sd::bundled_sd15_dir();
    return rest;
  }
  if (std::filesystem::is_directory(model)) return model;
  return sd::bundled_sd15_dir();  // single-file checkpoints use the bundled SD 1.5 configs
}

ModelFlops model_flops(const std::string& model, int64_t batch, bool guidance, int64_t height, int64_t width) {
  const auto dir = model_config_dir(model);
  const auto unet = read_json_file(dir / "unet" / "config.json");
  const auto vae = read_json_file(dir / "vae" / "config.json");
  int64_t tokens = 77;
  if (std::filesystem::exists(dir / "text_encoder" / "config.json")) {
    tokens = int_or(read_json_file(dir / "text_encoder" / "config.json"), "max_position_embeddings", 77);
  }
  const auto vae_channels = vae.at("block_out_channels").size();
  const int64_t factor = int64_t{1} << (vae_channels - 1);
  ModelFlops out;
  out.unet_batch = guidance ? 2 * batch : batch;
  out.unet = unet_flops(unet, out.unet_batch, height / factor, width / factor, tokens);
  out.vae_decode = vae_decode_flops(vae, batch, height / factor, width / factor);
  return out;
}

}  // namespace sd_bench
