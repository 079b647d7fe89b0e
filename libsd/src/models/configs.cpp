#include "models/configs.h"

#include <cmath>

#include "core/json_config.h"
#include "models/config_limits.h"

namespace sd {
namespace {

// Range checks run before any structural check (a zero norm_num_groups must not reach a modulo)
// and before anything is built; the bounds and why they are what they are: config_limits.h.
void check_int(const JsonConfig& json, const std::string& field, int64_t value, int64_t lo, int64_t hi) {
  SD_CHECK(value >= lo && value <= hi, json.origin(), ": field '", field, "' = ", value, " is out of range [", lo,
           ", ", hi, "]", value > hi ? " (far beyond any Stable Diffusion model; bounds: models/config_limits.h)" : "");
}

void check_ints(const JsonConfig& json, const char* field, const std::vector<int64_t>& values, int64_t lo, int64_t hi) {
  for (size_t i = 0; i < values.size(); ++i) {
    check_int(json, std::string(field) + "[" + std::to_string(i) + "]", values[i], lo, hi);
  }
}

void check_list_size(const JsonConfig& json, const char* field, size_t size, int64_t hi) {
  SD_CHECK(size >= 1 && static_cast<int64_t>(size) <= hi, json.origin(), ": field '", field, "' has ", size,
           " entries, expected 1 to ", hi);
}

void check_finite(const JsonConfig& json, const char* field, double value) {
  SD_CHECK(std::isfinite(value), json.origin(), ": field '", field, "' = ", value, " is not a finite number");
}

void check_epsilon(const JsonConfig& json, const char* field, double value) {
  SD_CHECK(std::isfinite(value) && value > 0 && value <= limits::kMaxEpsilon, json.origin(), ": field '", field,
           "' = ", value, " is out of range (0, ", limits::kMaxEpsilon, "]");
}

template <class T>
void require_value(const JsonConfig& json, const char* key, const T& allowed) {
  if (!json.has(key)) return;
  const T value = json.get<T>(key, allowed);
  SD_CHECK(value == allowed, json.origin(), ": field '", key, "' = ", json.json()[key].dump(),
           " is not supported (libsd supports the Stable Diffusion 1.x/2.x family; expected ",
           nlohmann::json(allowed).dump(), ")");
}

void require_null(const JsonConfig& json, const char* key) {
  SD_CHECK(!json.has(key), json.origin(), ": field '", key, "' = ", json.json()[key].dump(),
           " is not supported (libsd supports the Stable Diffusion 1.x/2.x family)");
}

}  // namespace

CLIPTextConfig CLIPTextConfig::from_json(const JsonConfig& json) {
  CLIPTextConfig c;
  c.vocab_size = json.get("vocab_size", c.vocab_size);
  c.hidden_size = json.get("hidden_size", c.hidden_size);
  c.intermediate_size = json.get("intermediate_size", c.intermediate_size);
  c.num_hidden_layers = json.get("num_hidden_layers", c.num_hidden_layers);
  c.num_attention_heads = json.get("num_attention_heads", c.num_attention_heads);
  c.max_position_embeddings = json.get("max_position_embeddings", c.max_position_embeddings);
  c.hidden_act = json.get("hidden_act", c.hidden_act);
  c.layer_norm_eps = json.get("layer_norm_eps", c.layer_norm_eps);
  c.eos_token_id = json.get("eos_token_id", c.eos_token_id);
  check_int(json, "vocab_size", c.vocab_size, 1, limits::kMaxVocabSize);
  check_int(json, "hidden_size", c.hidden_size, 1, limits::kMaxHiddenSize);
  check_int(json, "intermediate_size", c.intermediate_size, 1, limits::kMaxIntermediateSize);
  check_int(json, "num_hidden_layers", c.num_hidden_layers, 1, limits::kMaxTextLayers);
  check_int(json, "num_attention_heads", c.num_attention_heads, 1, limits::kMaxAttentionHeads);
  // The tokenizer always makes 77 positions (CLIP's context): fewer embeddings could not hold them.
  check_int(json, "max_position_embeddings", c.max_position_embeddings, 77, limits::kMaxPositionEmbeddings);
  check_int(json, "eos_token_id", c.eos_token_id, 0, c.vocab_size - 1);
  check_epsilon(json, "layer_norm_eps", c.layer_norm_eps);
  SD_CHECK(c.hidden_act == "quick_gelu" || c.hidden_act == "gelu", json.origin(), ": field 'hidden_act' = '",
           c.hidden_act, "' is not supported (quick_gelu or gelu)");
  SD_CHECK(c.hidden_size > 0 && c.num_attention_heads > 0 && c.hidden_size % c.num_attention_heads == 0,
           json.origin(), ": hidden_size ", c.hidden_size, " must be a positive multiple of num_attention_heads ",
           c.num_attention_heads);
  return c;
}

CLIPTextConfig CLIPTextConfig::from_file(const std::filesystem::path& path) {
  return from_json(JsonConfig::from_file(path));
}

UNetConfig UNetConfig::from_json(const JsonConfig& json) {
  UNetConfig c;
  c.in_channels = json.get("in_channels", c.in_channels);
  c.out_channels = json.get("out_channels", c.out_channels);
  c.block_out_channels = json.get("block_out_channels", c.block_out_channels);
  c.down_block_types = json.get("down_block_types", c.down_block_types);
  c.up_block_types = json.get("up_block_types", c.up_block_types);
  c.layers_per_block = json.get("layers_per_block", c.layers_per_block);
  c.cross_attention_dim = json.get("cross_attention_dim", c.cross_attention_dim);
  c.use_linear_projection = json.get("use_linear_projection", c.use_linear_projection);
  c.upcast_attention = json.get("upcast_attention", c.upcast_attention);
  c.norm_num_groups = json.get("norm_num_groups", c.norm_num_groups);
  c.norm_eps = json.get("norm_eps", c.norm_eps);
  c.flip_sin_to_cos = json.get("flip_sin_to_cos", c.flip_sin_to_cos);
  c.freq_shift = json.get("freq_shift", c.freq_shift);
  c.downsample_padding = json.get("downsample_padding", c.downsample_padding);
  c.mid_block_scale_factor = json.get("mid_block_scale_factor", c.mid_block_scale_factor);
  c.sample_size = json.get("sample_size", c.sample_size);
  check_int(json, "in_channels", c.in_channels, 1, limits::kMaxModelChannels);
  check_int(json, "out_channels", c.out_channels, 1, limits::kMaxModelChannels);
  check_list_size(json, "block_out_channels", c.block_out_channels.size(), limits::kMaxUNetBlocks);
  check_ints(json, "block_out_channels", c.block_out_channels, 1, limits::kMaxChannels);
  check_int(json, "layers_per_block", c.layers_per_block, 1, limits::kMaxLayersPerBlock);
  check_int(json, "cross_attention_dim", c.cross_attention_dim, 1, limits::kMaxCrossAttentionDim);
  check_int(json, "norm_num_groups", c.norm_num_groups, 1, limits::kMaxChannels);
  check_epsilon(json, "norm_eps", c.norm_eps);
  check_finite(json, "freq_shift", c.freq_shift);
  check_finite(json, "mid_block_scale_factor", c.mid_block_scale_factor);
  check_int(json, "downsample_padding", c.downsample_padding, 0, limits::kMaxDownsamplePadding);
  check_int(json, "sample_size", c.sample_size, 1, limits::kMaxUNetSampleSize);

  const size_t n = c.block_out_channels.size();
  SD_CHECK(n >= 1 && c.down_block_types.size() == n && c.up_block_types.size() == n, json.origin(),
           ": block_out_channels, down_block_types and up_block_types must have the same length (", n, ", ",
           c.down_block_types.size(), ", ", c.up_block_types.size(), ")");
  for (const auto& t : c.down_block_types) {
    SD_CHECK(t == "CrossAttnDownBlock2D" || t == "DownBlock2D", json.origin(), ": down_block_types: '", t,
             "' is not supported (CrossAttnDownBlock2D or DownBlock2D)");
  }
  for (const auto& t : c.up_block_types) {
    SD_CHECK(t == "CrossAttnUpBlock2D" || t == "UpBlock2D", json.origin(), ": up_block_types: '", t,
             "' is not supported (CrossAttnUpBlock2D or UpBlock2D)");
  }
  // diffusers: num_attention_heads defaults to attention_head_dim, which for these models holds the
  // number of heads (a naming accident kept for compatibility with existing configs).
  const char* heads_key = json.has("num_attention_heads") ? "num_attention_heads" : "attention_head_dim";
  c.num_heads = json.int_or_list(heads_key, 8, n);
  c.transformer_layers_per_block = json.int_or_list("transformer_layers_per_block", 1, n);
  check_ints(json, heads_key, c.num_heads, 1, limits::kMaxAttentionHeads);
  check_ints(json, "transformer_layers_per_block", c.transformer_layers_per_block, 1, limits::kMaxTransformerLayers);
  for (size_t i = 0; i < n; ++i) {
    SD_CHECK(c.block_out_channels[i] % c.norm_num_groups == 0, json.origin(), ": block_out_channels[", i, "] = ",
             c.block_out_channels[i], " is not a multiple of norm_num_groups ", c.norm_num_groups);
    SD_CHECK(c.num_heads[i] > 0 && c.block_out_channels[i] % c.num_heads[i] == 0, json.origin(), ": ", heads_key,
             "[", i, "] = ", c.num_heads[i], " must divide block_out_channels[", i, "] = ", c.block_out_channels[i]);
  }
  require_value(json, "mid_block_type", std::string("UNetMidBlock2DCrossAttn"));
  require_value(json, "act_fn", std::string("silu"));
  require_value(json, "only_cross_attention", false);
  require_value(json, "dual_cross_attention", false);
  require_value(json, "center_input_sample", false);
  require_value(json, "time_embedding_type", std::string("positional"));
  require_value(json, "resnet_time_scale_shift", std::string("default"));
  require_value(json, "conv_in_kernel", int64_t{3});
  require_value(json, "conv_out_kernel", int64_t{3});
  require_value(json, "resnet_out_scale_factor", 1.0);
  require_value(json, "resnet_skip_time_act", false);
  require_value(json, "attention_type", std::string("default"));
  require_null(json, "class_embed_type");
  require_null(json, "addition_embed_type");
  require_null(json, "encoder_hid_dim");
  require_null(json, "time_cond_proj_dim");
  require_null(json, "num_class_embeds");
  require_null(json, "time_embedding_dim");
  require_null(json, "timestep_post_act");
  // Every field in range can still multiply into an absurd model (8 levels of 8192 channels): the
  // estimate bounds the whole before anything is built.
  const double parameters = estimate_unet_parameters(c);
  SD_CHECK(parameters <= static_cast<double>(limits::kMaxUNetParameters), json.origin(), ": this UNet config describes ~",
           parameters / 1e9, " G parameters, more than the bound of ", limits::kMaxUNetParameters / 1e9,
           " G (SD 1.5 has 0.86 G, SDXL 2.6 G; block_out_channels, layers_per_block and "
           "transformer_layers_per_block set it)");
  return c;
}

UNetConfig UNetConfig::from_file(const std::filesystem::path& path) { return from_json(JsonConfig::from_file(path)); }

// The accounting: convolutions 3x3 (9 Cin Cout), the resnets' time projections, one shortcut where
// the width changes, and per transformer block self-attention (4 C^2), cross-attention
// (2 C^2 + 2 C D) and the GEGLU feed-forward (12 C^2), plus proj_in/proj_out. Biases and norms are
// left out: a few per cent low for SD 1.5 (tests/test_hostile_configs.cpp compares).
double estimate_unet_parameters(const UNetConfig& c) {
  const auto& ch = c.block_out_channels;
  const size_t n = ch.size();
  if (n == 0) return 0;
  const double c0 = static_cast<double>(ch[0]);
  const double temb = 4 * c0;
  const double cross = static_cast<double>(c.cross_attention_dim);
  auto resnet = [&](double cin, double cout) {
    return 9 * cin * cout + 9 * cout * cout + temb * cout + (cin != cout ? cin * cout : 0);
  };
  auto transformer = [&](double width, int64_t layers) {
    return 2 * width * width + static_cast<double>(layers) * (18 * width * width + 2 * width * cross);
  };
  const double per_block = static_cast<double>(c.layers_per_block);
  double total = 9 * static_cast<double>(c.in_channels) * c0 + c0 * temb + temb * temb +
                 9 * c0 * static_cast<double>(c.out_channels);
  double prev = c0;
  for (size_t i = 0; i < n; ++i) {
    const double width = static_cast<double>(ch[i]);
    const int64_t layers = i < c.transformer_layers_per_block.size() ? c.transformer_layers_per_block[i] : 1;
    total += resnet(prev, width) + (per_block - 1) * resnet(width, width);
    if (c.down_has_attention(i)) total += per_block * transformer(width, layers);
    if (i + 1 < n) total += 9 * width * width;
    prev = width;
  }
  const double top = static_cast<double>(ch[n - 1]);
  total += 2 * resnet(top, top) + transformer(top, c.transformer_layers_per_block.empty() ? 1 : c.transformer_layers_per_block.back());
  for (size_t i = 0; i < n; ++i) {
    const double width = static_cast<double>(ch[n - 1 - i]);
    const int64_t layers =
        n - 1 - i < c.transformer_layers_per_block.size() ? c.transformer_layers_per_block[n - 1 - i] : 1;
    // Each up resnet also takes a skip connection: about twice its width in.
    total += (per_block + 1) * resnet(2 * width, width);
    if (c.up_has_attention(i)) total += (per_block + 1) * transformer(width, layers);
    if (i + 1 < n) total += 9 * width * width;
  }
  return total;
}

VAEConfig VAEConfig::from_json(const JsonConfig& json) {
  VAEConfig c;
  c.in_channels = json.get("in_channels", c.in_channels);
  c.out_channels = json.get("out_channels", c.out_channels);
  c.latent_channels = json.get("latent_channels", c.latent_channels);
  c.block_out_channels = json.get("block_out_channels", c.block_out_channels);
  c.layers_per_block = json.get("layers_per_block", c.layers_per_block);
  c.norm_num_groups = json.get("norm_num_groups", c.norm_num_groups);
  c.scaling_factor = json.get("scaling_factor", c.scaling_factor);
  c.sample_size = json.get("sample_size", c.sample_size);
  check_int(json, "in_channels", c.in_channels, 1, limits::kMaxImageChannels);
  check_int(json, "out_channels", c.out_channels, 1, limits::kMaxImageChannels);
  check_int(json, "latent_channels", c.latent_channels, 1, limits::kMaxModelChannels);
  check_list_size(json, "block_out_channels", c.block_out_channels.size(), limits::kMaxVAEBlocks);
  check_ints(json, "block_out_channels", c.block_out_channels, 1, limits::kMaxChannels);
  check_int(json, "layers_per_block", c.layers_per_block, 1, limits::kMaxLayersPerBlock);
  check_int(json, "norm_num_groups", c.norm_num_groups, 1, limits::kMaxChannels);
  SD_CHECK(std::isfinite(c.scaling_factor) && c.scaling_factor > 0, json.origin(), ": field 'scaling_factor' = ",
           c.scaling_factor, " must be a positive finite number");
  check_int(json, "sample_size", c.sample_size, 1, limits::kMaxVAESampleSize);
  const size_t n = c.block_out_channels.size();
  for (const char* key : {"down_block_types", "up_block_types"}) {
    if (!json.has(key)) continue;
    auto types = json.get<std::vector<std::string>>(key, {});
    SD_CHECK(types.size() == n, json.origin(), ": field '", key, "' has ", types.size(), " entries, expected ", n);
    for (const auto& t : types) {
      SD_CHECK(t == "DownEncoderBlock2D" || t == "UpDecoderBlock2D", json.origin(), ": ", key, ": '", t,
               "' is not supported");
    }
  }
  require_value(json, "act_fn", std::string("silu"));
  require_value(json, "mid_block_add_attention", true);
  for (auto ch : c.block_out_channels) {
    SD_CHECK(ch % c.norm_num_groups == 0, json.origin(), ": block_out_channels entry ", ch,
             " is not a multiple of norm_num_groups ", c.norm_num_groups);
  }
  return c;
}

VAEConfig VAEConfig::from_file(const std::filesystem::path& path) { return from_json(JsonConfig::from_file(path)); }

}  // namespace sd
