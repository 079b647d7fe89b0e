#pragma once
// AutoencoderTiny (TAESD, madebyollin/taesd): a small distilled encoder/decoder for SD's latent
// space, built from its config.json; a fast preview or replacement decoder.
// Ref: diffusers src/diffusers/models/autoencoders/{autoencoder_tiny.py, vae.py (EncoderTiny,
//      DecoderTiny)}, unets/unet_2d_blocks.py (AutoencoderTinyBlock),
//      scripts/convert_tiny_autoencoder_to_diffusers.py @ 0.27.2
//
// Conventions (diffusers'): decode takes raw latents (the SD pipeline divides by
// config.scaling_factor, 1.0 here) and returns an image in [-1, 1] (not clamped); the decoder
// first soft-clamps its input to (-3, 3) with tanh(x / 3) * 3. encode takes an image in [-1, 1]
// and returns raw latents (no distribution: TAESD's encoder is deterministic).
#include <torch/torch.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "models/conv2d.h"
#include "sd/safetensors.h"

namespace sd {

class JsonConfig;

struct TinyVAEConfig {  // diffusers AutoencoderTiny; member defaults are diffusers' (= madebyollin/taesd)
  int64_t in_channels = 3, out_channels = 3, latent_channels = 4;
  std::vector<int64_t> encoder_block_out_channels{64, 64, 64, 64};
  std::vector<int64_t> decoder_block_out_channels{64, 64, 64, 64};
  std::vector<int64_t> num_encoder_blocks{1, 3, 3, 3};  // AutoencoderTinyBlocks per encoder stage
  std::vector<int64_t> num_decoder_blocks{3, 3, 3, 1};  // per decoder stage
  std::string act_fn = "relu";                          // relu, silu/swish, mish or gelu (lower case)
  int64_t upsampling_scaling_factor = 2;
  double latent_magnitude = 3.0, latent_shift = 0.5;  // diffusers' scale_latents / unscale_latents only
  double scaling_factor = 1.0;
  static TinyVAEConfig from_json(const JsonConfig& json);
  static TinyVAEConfig from_file(const std::filesystem::path& path);
  // Image size / latent size: one stride-2 convolution per encoder stage after the first.
  int64_t downscale_factor() const { return int64_t{1} << (num_encoder_blocks.size() - 1); }
  // Output size / latent size of the decoder: one upsampling between decoder stages.
  int64_t upscale_factor() const;
};

enum class TinyActivation { kReLU, kSiLU, kMish, kGELU };

// conv = [Conv3x3, act, Conv3x3, act, Conv3x3] (the activations hold the indices 1 and 3, as in
// diffusers' nn.Sequential); skip = 1x1 conv without bias iff in != out; out = relu(conv(x) + skip(x)).
struct AutoencoderTinyBlockImpl : torch::nn::Module {
  AutoencoderTinyBlockImpl(int64_t in_channels, int64_t out_channels, TinyActivation act);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::ModuleList conv{nullptr};
  Conv2d skip{nullptr};
  TinyActivation act;
};
TORCH_MODULE(AutoencoderTinyBlock);

// EncoderTiny and DecoderTiny are each one nn.Sequential `layers`: convolutions, blocks and
// parameter-free activations/upsamplings (placeholders here, so that the indices line up).
struct TinyLayersImpl : torch::nn::Module {
  enum class Kind { kConv, kBlock, kActivation, kUpsample };
  TinyLayersImpl(TinyActivation act, int64_t upsampling);
  void add(Kind kind, std::shared_ptr<torch::nn::Module> module);
  torch::Tensor run_layers(torch::Tensor x);
  torch::nn::ModuleList layers{nullptr};
  std::vector<Kind> kinds;
  TinyActivation act;
  int64_t upsampling;
};

struct EncoderTinyImpl : TinyLayersImpl {
  explicit EncoderTinyImpl(const TinyVAEConfig& config);
  torch::Tensor forward(const torch::Tensor& image);  // [B,3,H,W] in [-1,1] -> [B,latent,H/f,W/f]
};
TORCH_MODULE(EncoderTiny);

struct DecoderTinyImpl : TinyLayersImpl {
  explicit DecoderTinyImpl(const TinyVAEConfig& config);
  torch::Tensor forward(const torch::Tensor& z);  // raw latents -> [B,3,h*f,w*f] in [-1,1]
};
TORCH_MODULE(DecoderTiny);

struct AutoencoderTinyImpl : torch::nn::Module {
  // with_encoder false: the decoder only (text-to-image and previews never encode).
  explicit AutoencoderTinyImpl(const TinyVAEConfig& config, bool with_encoder = true);
  torch::Tensor decode(const torch::Tensor& z);      // raw latents (latents / scaling_factor) -> [-1, 1]
  torch::Tensor encode(const torch::Tensor& image);  // [-1, 1] -> raw latents
  TinyVAEConfig config;
  EncoderTiny encoder{nullptr};
  DecoderTiny decoder{nullptr};
};
TORCH_MODULE(AutoencoderTiny);

// A diffusers AutoencoderTiny folder: config.json + diffusion_pytorch_model[.<variant>].safetensors,
// bound strictly. A config of another class (an AutoencoderKL's vae/ folder) is refused.
AutoencoderTiny load_autoencoder_tiny_folder(const std::filesystem::path& dir, bool with_encoder = true,
                                             const std::string& variant = "");

// madebyollin/taesd's original weights: taesd_decoder.safetensors and taesd_encoder.safetensors
// (nn.Sequential numbering; the decoder's layer 0 is its parameter-free Clamp), renamed as diffusers'
// conversion script does: encoder "k" -> "encoder.layers.k", decoder "N.rest" ->
// "decoder.layers.<N-1>.rest". Either part may be empty. `origin`s name the files in errors.
StateDict taesd_original_to_diffusers(const StateDict& encoder, const StateDict& decoder,
                                      const std::string& encoder_origin = "encoder",
                                      const std::string& decoder_origin = "decoder");
// The architecture of original TAESD weights, which carry no config: TAESD's layout (diffusers'
// default block counts) with the width and the latent channels of the decoder's first convolution
// ("1.weight": [width, latent, 3, 3]), so that 16-channel variants load too.
TinyVAEConfig taesd_original_config(const StateDict& decoder, const std::string& decoder_origin = "decoder");
// Loads the original files; `config` defaults to taesd_original_config of the decoder. An empty
// encoder_file: decoder only.
AutoencoderTiny load_autoencoder_tiny_original(const std::filesystem::path& decoder_file,
                                               const std::filesystem::path& encoder_file = {},
                                               const std::optional<TinyVAEConfig>& config = std::nullopt);

// Either layout by what `path` is: a folder with config.json (diffusers); a folder holding one
// *_decoder.safetensors (original; the matching *_encoder.safetensors beside it is used where
// with_encoder and present); or such a *_decoder.safetensors file itself.
AutoencoderTiny load_autoencoder_tiny(const std::filesystem::path& path, bool with_encoder = true);

}  // namespace sd
