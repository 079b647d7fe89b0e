#pragma once
// Typed model configs read from the model's own config.json files. Member defaults are
// diffusers'/transformers' defaults (what applies when an older config omits a field); values
// outside the SD 1.x/2.x family are refused with an error naming the field.
#include <filesystem>
#include <string>
#include <vector>

namespace sd {

class JsonConfig;

struct CLIPTextConfig {  // transformers CLIPTextConfig
  int64_t vocab_size = 49408;
  int64_t hidden_size = 512;
  int64_t intermediate_size = 2048;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 8;
  int64_t max_position_embeddings = 77;
  std::string hidden_act = "quick_gelu";  // or "gelu" (SD 2.x OpenCLIP-H)
  double layer_norm_eps = 1e-5;
  int64_t eos_token_id = 2;               // 2 = legacy configs: pooled output at argmax(input_ids)
  static CLIPTextConfig from_json(const JsonConfig& json);
  static CLIPTextConfig from_file(const std::filesystem::path& path);
};

struct UNetConfig {  // diffusers UNet2DConditionModel, SD 1.x/2.x family
  int64_t in_channels = 4, out_channels = 4;
  std::vector<int64_t> block_out_channels{320, 640, 1280, 1280};
  std::vector<std::string> down_block_types{"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                            "DownBlock2D"};
  std::vector<std::string> up_block_types{"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                                          "CrossAttnUpBlock2D"};
  int64_t layers_per_block = 2;
  std::vector<int64_t> num_heads;   // per down block; diffusers calls it attention_head_dim (a misnomer kept for compatibility)
  std::vector<int64_t> transformer_layers_per_block;  // per down block
  int64_t cross_attention_dim = 768;
  bool use_linear_projection = false;
  bool upcast_attention = false;
  int64_t norm_num_groups = 32;
  double norm_eps = 1e-5;
  bool flip_sin_to_cos = true;
  double freq_shift = 0;
  int64_t downsample_padding = 1;
  double mid_block_scale_factor = 1.0;
  int64_t sample_size = 64;
  static UNetConfig from_json(const JsonConfig& json);
  static UNetConfig from_file(const std::filesystem::path& path);
  bool down_has_attention(size_t block) const { return down_block_types[block] == "CrossAttnDownBlock2D"; }
  bool up_has_attention(size_t block) const { return up_block_types[block] == "CrossAttnUpBlock2D"; }
};

// The UNet's parameter count from its config alone (no module built), within ~10 %: what bounds a
// config before building it (models/config_limits.h kMaxUNetParameters).
double estimate_unet_parameters(const UNetConfig& config);

struct VAEConfig {  // diffusers AutoencoderKL
  int64_t in_channels = 3, out_channels = 3, latent_channels = 4;
  std::vector<int64_t> block_out_channels{128, 256, 512, 512};
  int64_t layers_per_block = 2;
  int64_t norm_num_groups = 32;
  double scaling_factor = 0.18215;
  int64_t sample_size = 512;
  static VAEConfig from_json(const JsonConfig& json);
  static VAEConfig from_file(const std::filesystem::path& path);
  // How much smaller the latents are than the image (8 for SD).
  int64_t downscale_factor() const { return int64_t{1} << (block_out_channels.size() - 1); }
};

}  // namespace sd
