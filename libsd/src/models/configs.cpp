#include "models/configs.h"

#include "core/json_config.h"

namespace sd {
namespace {

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
  SD_CHECK(c.norm_num_groups > 0, json.origin(), ": norm_num_groups = ", c.norm_num_groups, " must be positive");
  for (size_t i = 0; i < n; ++i) {
    SD_CHECK(c.block_out_channels[i] > 0, json.origin(), ": block_out_channels[", i, "] = ", c.block_out_channels[i],
             " must be positive");
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
  return c;
}

UNetConfig UNetConfig::from_file(const std::filesystem::path& path) { return from_json(JsonConfig::from_file(path)); }

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
  const size_t n = c.block_out_channels.size();
  SD_CHECK(n >= 1, json.origin(), ": block_out_channels is empty");
  // The latents are 2^(n-1) times smaller than the image: more than 8 blocks is no VAE of this family
  // (SD's has 4), and past 63 the factor does not fit an int64.
  SD_CHECK(n <= 8, json.origin(), ": block_out_channels has ", n, " entries, at most 8 are supported");
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
  SD_CHECK(c.norm_num_groups > 0, json.origin(), ": norm_num_groups = ", c.norm_num_groups, " must be positive");
  for (auto ch : c.block_out_channels) {
    SD_CHECK(ch > 0, json.origin(), ": block_out_channels entry ", ch, " must be positive");
    SD_CHECK(ch % c.norm_num_groups == 0, json.origin(), ": block_out_channels entry ", ch,
             " is not a multiple of norm_num_groups ", c.norm_num_groups);
  }
  return c;
}

VAEConfig VAEConfig::from_file(const std::filesystem::path& path) { return from_json(JsonConfig::from_file(path)); }

}  // namespace sd
