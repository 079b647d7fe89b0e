// Ref: diffusers src/diffusers/models/autoencoders/{autoencoder_tiny.py, vae.py},
//      unets/unet_2d_blocks.py, scripts/convert_tiny_autoencoder_to_diffusers.py @ 0.27.2
#include "models/vae_tiny.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "core/json_config.h"
#include "models/layers.h"
#include "sd/error.h"
#include "weights/bind.h"

namespace sd {
namespace nn = torch::nn;
namespace fs = std::filesystem;

namespace {

TinyActivation activation_of(const std::string& name) {
  // diffusers' get_activation lower-cases the name first.
  std::string n = name;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (n == "relu") return TinyActivation::kReLU;
  if (n == "silu" || n == "swish") return TinyActivation::kSiLU;
  if (n == "mish") return TinyActivation::kMish;
  if (n == "gelu") return TinyActivation::kGELU;
  SD_FAIL("AutoencoderTiny: act_fn '", name, "' is not supported (relu, silu, swish, mish or gelu)");
}

// `fresh` is a temporary nobody else holds: the cheap activations run in place.
torch::Tensor activate(torch::Tensor fresh, TinyActivation act) {
  switch (act) {
    case TinyActivation::kReLU:
      return torch::relu_(fresh);
    case TinyActivation::kSiLU:
      return torch::silu_(fresh);
    case TinyActivation::kMish:
      return torch::mish(fresh);
    case TinyActivation::kGELU:
      return torch::gelu(fresh);  // exact (erf), nn.GELU's default
  }
  return fresh;
}

Conv2d conv3x3(int64_t in, int64_t out, int64_t stride = 1, bool bias = true) {
  return Conv2d(nn::Conv2dOptions(in, out, 3).padding(1).stride(stride).bias(bias));
}

void check_stage_lists(const JsonConfig& json, const char* channels_key, const std::vector<int64_t>& channels,
                       const char* blocks_key, const std::vector<int64_t>& blocks) {
  SD_CHECK(!channels.empty(), json.origin(), ": field '", channels_key, "' is empty");
  SD_CHECK(channels.size() == blocks.size(), json.origin(), ": field '", channels_key, "' has ", channels.size(),
           " entries but '", blocks_key, "' has ", blocks.size(), " (one per stage)");
  for (size_t i = 0; i < channels.size(); ++i) {
    SD_CHECK(channels[i] > 0, json.origin(), ": field '", channels_key, "'[", i, "] = ", channels[i],
             " must be positive");
    // diffusers builds each stage's first convolution with the stage's own width as its input,
    // so a model whose widths differ can be built but not run: refuse it here.
    SD_CHECK(channels[i] == channels[0], json.origin(), ": field '", channels_key,
             "' = ", nlohmann::json(channels).dump(), " must hold one width for every stage (diffusers' ",
             "AutoencoderTiny cannot run with different widths)");
    SD_CHECK(blocks[i] >= 0, json.origin(), ": field '", blocks_key, "'[", i, "] = ", blocks[i],
             " must not be negative");
  }
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

// --------------------------------------------------------------------------------------------------
// config

int64_t TinyVAEConfig::upscale_factor() const {
  int64_t f = 1;
  for (size_t i = 1; i < num_decoder_blocks.size(); ++i) f *= upsampling_scaling_factor;
  return f;
}

TinyVAEConfig TinyVAEConfig::from_json(const JsonConfig& json) {
  if (json.has("_class_name")) {
    const auto cls = json.get<std::string>("_class_name", "");
    SD_CHECK(cls == "AutoencoderTiny", json.origin(), ": field '_class_name' = '", cls,
             "': not an AutoencoderTiny (TAESD) config",
             cls == "AutoencoderKL" ? " (a full VAE: load it as the pipeline's VAE instead)" : "");
  }
  TinyVAEConfig c;
  c.in_channels = json.get("in_channels", c.in_channels);
  c.out_channels = json.get("out_channels", c.out_channels);
  c.latent_channels = json.get("latent_channels", c.latent_channels);
  c.encoder_block_out_channels = json.get("encoder_block_out_channels", c.encoder_block_out_channels);
  c.decoder_block_out_channels = json.get("decoder_block_out_channels", c.decoder_block_out_channels);
  c.num_encoder_blocks = json.get("num_encoder_blocks", c.num_encoder_blocks);
  c.num_decoder_blocks = json.get("num_decoder_blocks", c.num_decoder_blocks);
  c.act_fn = json.get("act_fn", c.act_fn);
  c.upsampling_scaling_factor = json.get("upsampling_scaling_factor", c.upsampling_scaling_factor);
  c.latent_magnitude = json.get("latent_magnitude", c.latent_magnitude);
  c.latent_shift = json.get("latent_shift", c.latent_shift);
  c.scaling_factor = json.get("scaling_factor", c.scaling_factor);

  for (auto [key, value] : {std::pair<const char*, int64_t>{"in_channels", c.in_channels},
                            {"out_channels", c.out_channels},
                            {"latent_channels", c.latent_channels}}) {
    SD_CHECK(value > 0, json.origin(), ": field '", key, "' = ", value, " must be positive");
  }
  check_stage_lists(json, "encoder_block_out_channels", c.encoder_block_out_channels, "num_encoder_blocks",
                    c.num_encoder_blocks);
  check_stage_lists(json, "decoder_block_out_channels", c.decoder_block_out_channels, "num_decoder_blocks",
                    c.num_decoder_blocks);
  SD_CHECK(c.num_encoder_blocks.size() <= 16 && c.num_decoder_blocks.size() <= 16, json.origin(),
           ": more than 16 encoder/decoder stages");
  SD_CHECK(c.upsampling_scaling_factor >= 1 && c.upsampling_scaling_factor <= 8, json.origin(),
           ": field 'upsampling_scaling_factor' = ", c.upsampling_scaling_factor, " must be 1 to 8");
  SD_CHECK(std::isfinite(c.scaling_factor) && c.scaling_factor > 0, json.origin(),
           ": field 'scaling_factor' = ", c.scaling_factor, " must be positive");
  SD_CHECK(std::isfinite(c.latent_magnitude) && c.latent_magnitude > 0, json.origin(),
           ": field 'latent_magnitude' = ", c.latent_magnitude, " must be positive");
  try {
    activation_of(c.act_fn);
  } catch (const Error& e) {
    SD_FAIL(json.origin(), ": field 'act_fn': ", e.what());
  }
  return c;
}

TinyVAEConfig TinyVAEConfig::from_file(const fs::path& path) { return from_json(JsonConfig::from_file(path)); }

// --------------------------------------------------------------------------------------------------
// modules

AutoencoderTinyBlockImpl::AutoencoderTinyBlockImpl(int64_t in_channels, int64_t out_channels, TinyActivation a)
    : act(a) {
  conv = register_module("conv", nn::ModuleList());
  conv->push_back(conv3x3(in_channels, out_channels));
  conv->push_back(nn::Identity());  // conv.1: the activation
  conv->push_back(conv3x3(out_channels, out_channels));
  conv->push_back(nn::Identity());  // conv.3
  conv->push_back(conv3x3(out_channels, out_channels));
  if (in_channels != out_channels) {
    skip = register_module("skip", Conv2d(nn::Conv2dOptions(in_channels, out_channels, 1).bias(false)));
  }
}

torch::Tensor AutoencoderTinyBlockImpl::forward(const torch::Tensor& x) {
  auto h = activate(at<Conv2dImpl>(conv, 0).forward(x), act);
  h = activate(at<Conv2dImpl>(conv, 2).forward(h), act);
  h = at<Conv2dImpl>(conv, 4).forward(h);
  h = add_into(h, skip ? skip(x) : x);
  return torch::relu_(h);  // `fuse`
}

TinyLayersImpl::TinyLayersImpl(TinyActivation a, int64_t up) : act(a), upsampling(up) {
  layers = register_module("layers", nn::ModuleList());
}

void TinyLayersImpl::add(Kind kind, std::shared_ptr<nn::Module> module) {
  layers->push_back(std::move(module));
  kinds.push_back(kind);
}

torch::Tensor TinyLayersImpl::run_layers(torch::Tensor x) {
  for (size_t i = 0; i < kinds.size(); ++i) {
    switch (kinds[i]) {
      case Kind::kConv:
        x = at<Conv2dImpl>(layers, i).forward(x);
        break;
      case Kind::kBlock:
        x = at<AutoencoderTinyBlockImpl>(layers, i).forward(x);
        break;
      case Kind::kActivation:
        x = activate(x, act);  // always right after a convolution, whose output nobody else holds
        break;
      case Kind::kUpsample:  // nn.Upsample(scale_factor=k), nearest
        if (upsampling == 2) {
          x = repeat_2x2(x);
        } else {
          auto k = static_cast<double>(upsampling);
          x = torch::nn::functional::interpolate(x, torch::nn::functional::InterpolateFuncOptions()
                                                        .scale_factor(std::vector<double>{k, k})
                                                        .mode(torch::kNearest));
        }
        break;
    }
  }
  return x;
}

EncoderTinyImpl::EncoderTinyImpl(const TinyVAEConfig& c) : TinyLayersImpl(activation_of(c.act_fn), 1) {
  const auto act_kind = activation_of(c.act_fn);
  for (size_t i = 0; i < c.num_encoder_blocks.size(); ++i) {
    const int64_t ch = c.encoder_block_out_channels[i];
    // Stage 0 starts with the input convolution, the others with a stride-2 one without bias.
    add(Kind::kConv, i == 0 ? conv3x3(c.in_channels, ch).ptr() : conv3x3(ch, ch, 2, false).ptr());
    for (int64_t b = 0; b < c.num_encoder_blocks[i]; ++b)
      add(Kind::kBlock, AutoencoderTinyBlock(ch, ch, act_kind).ptr());
  }
  add(Kind::kConv, conv3x3(c.encoder_block_out_channels.back(), c.latent_channels).ptr());
}

torch::Tensor EncoderTinyImpl::forward(const torch::Tensor& image) {
  return run_layers(image.add(1).div(2));  // [-1, 1] -> TAESD's [0, 1]
}

DecoderTinyImpl::DecoderTinyImpl(const TinyVAEConfig& c)
    : TinyLayersImpl(activation_of(c.act_fn), c.upsampling_scaling_factor) {
  const auto act_kind = activation_of(c.act_fn);
  add(Kind::kConv, conv3x3(c.latent_channels, c.decoder_block_out_channels[0]).ptr());
  add(Kind::kActivation, nn::Identity().ptr());
  const size_t n = c.num_decoder_blocks.size();
  for (size_t i = 0; i < n; ++i) {
    const bool last = i + 1 == n;
    const int64_t ch = c.decoder_block_out_channels[i];
    for (int64_t b = 0; b < c.num_decoder_blocks[i]; ++b)
      add(Kind::kBlock, AutoencoderTinyBlock(ch, ch, act_kind).ptr());
    if (!last) add(Kind::kUpsample, nn::Identity().ptr());
    // Every stage ends with a convolution; only the last (to the output channels) has a bias.
    add(Kind::kConv, conv3x3(ch, last ? c.out_channels : ch, 1, last).ptr());
  }
}

torch::Tensor DecoderTinyImpl::forward(const torch::Tensor& z) {
  auto x = torch::tanh(z.div(3)).mul(3);  // soft clamp to (-3, 3); the 3 is fixed, not latent_magnitude
  return run_layers(x).mul(2).sub(1);     // TAESD's [0, 1] -> [-1, 1]
}

AutoencoderTinyImpl::AutoencoderTinyImpl(const TinyVAEConfig& c, bool with_encoder) : config(c) {
  if (with_encoder) encoder = register_module("encoder", EncoderTiny(c));
  decoder = register_module("decoder", DecoderTiny(c));
}

torch::Tensor AutoencoderTinyImpl::decode(const torch::Tensor& z) {
  SD_CHECK(z.dim() == 4 && z.size(1) == config.latent_channels, "AutoencoderTiny decode: latents must be [B, ",
           config.latent_channels, ", h, w], got ", z.sizes());
  return decoder(z);
}

torch::Tensor AutoencoderTinyImpl::encode(const torch::Tensor& image) {
  SD_CHECK(encoder, "AutoencoderTiny encode: this AutoencoderTiny was built without its encoder");
  SD_CHECK(image.dim() == 4 && image.size(1) == config.in_channels, "AutoencoderTiny encode: image must be [B, ",
           config.in_channels, ", H, W], got ", image.sizes());
  return encoder(image);
}

// --------------------------------------------------------------------------------------------------
// loading

AutoencoderTiny load_autoencoder_tiny_folder(const fs::path& dir, bool with_encoder, const std::string& variant) {
  SD_CHECK(fs::is_directory(dir), dir.string(), ": not a folder");
  const auto config_file = dir / "config.json";
  SD_CHECK(fs::exists(config_file), dir.string(), ": no config.json (a diffusers AutoencoderTiny folder has ",
           "config.json and diffusion_pytorch_model.safetensors)");
  const auto config = TinyVAEConfig::from_file(config_file);
  const std::string name =
      variant.empty() ? "diffusion_pytorch_model.safetensors" : "diffusion_pytorch_model." + variant + ".safetensors";
  const auto weights = dir / name;
  SD_CHECK(fs::exists(weights), weights.string(), ": missing (AutoencoderTiny weights; pickle .bin files are ",
           "not loaded)");
  AutoencoderTiny model(config, with_encoder);
  BindOptions bind;
  bind.origin = weights.string();
  if (!with_encoder) bind.ignore_prefixes = {"encoder."};
  load_state_dict(*model, load_safetensors(weights), bind);
  model->eval();
  return model;
}

StateDict taesd_original_to_diffusers(const StateDict& encoder, const StateDict& decoder,
                                      const std::string& encoder_origin, const std::string& decoder_origin) {
  // Keys are "<layer index>.<rest>" in both files.
  auto split = [](const std::string& origin, const std::string& key) {
    const auto dot = key.find('.');
    const bool numbered = dot != std::string::npos && dot > 0 &&
                          std::all_of(key.begin(), key.begin() + static_cast<std::ptrdiff_t>(dot),
                                      [](unsigned char ch) { return std::isdigit(ch) != 0; });
    SD_CHECK(numbered && dot <= 6, origin, ": tensor '", key, "' is not an original TAESD key (expected ",
             "nn.Sequential numbering such as '1.weight' or '3.conv.0.weight'; a diffusers AutoencoderTiny ",
             "or an AutoencoderKL file?)");
    return std::make_pair(std::stoll(key.substr(0, dot)), key.substr(dot + 1));
  };
  StateDict out;
  for (const auto& [key, tensor] : encoder) {
    split(encoder_origin, key);
    out.emplace("encoder.layers." + key, tensor);
  }
  for (const auto& [key, tensor] : decoder) {
    const auto [index, rest] = split(decoder_origin, key);
    SD_CHECK(index >= 1, decoder_origin, ": tensor '", key, "' belongs to layer 0, which in TAESD's decoder is ",
             "its parameter-free clamp (is this the encoder file?)");
    out.emplace("decoder.layers." + std::to_string(index - 1) + "." + rest, tensor);
  }
  return out;
}

TinyVAEConfig taesd_original_config(const StateDict& decoder, const std::string& decoder_origin) {
  const auto it = decoder.find("1.weight");
  SD_CHECK(it != decoder.end() && it->second.dim() == 4, decoder_origin, ": no 4-d tensor '1.weight' (the first ",
           "convolution of an original TAESD decoder)");
  TinyVAEConfig c;
  const int64_t width = it->second.size(0);
  c.latent_channels = it->second.size(1);
  c.encoder_block_out_channels.assign(c.num_encoder_blocks.size(), width);
  c.decoder_block_out_channels.assign(c.num_decoder_blocks.size(), width);
  return c;
}

AutoencoderTiny load_autoencoder_tiny_original(const fs::path& decoder_file, const fs::path& encoder_file,
                                               const std::optional<TinyVAEConfig>& config) {
  SD_CHECK(!decoder_file.empty(), "TAESD: a decoder file is needed");
  for (const auto& f : {decoder_file, encoder_file}) {
    if (f.empty()) continue;
    SD_CHECK(!is_pickle_file(f), f.string(), ": pickle files are not loaded (they can run code); use the ",
             ".safetensors release of TAESD");
    SD_CHECK(fs::exists(f), f.string(), ": no such file");
  }
  const StateDict decoder = load_safetensors(decoder_file);
  const StateDict encoder = encoder_file.empty() ? StateDict{} : load_safetensors(encoder_file);
  const bool with_encoder = !encoder_file.empty();
  // Renamed first: a file of another kind is reported as such before its shapes are read.
  const StateDict renamed = taesd_original_to_diffusers(encoder, decoder, encoder_file.string(), decoder_file.string());
  AutoencoderTiny model(config ? *config : taesd_original_config(decoder, decoder_file.string()), with_encoder);
  BindOptions bind;
  bind.origin = with_encoder ? decoder_file.string() + " + " + encoder_file.string() : decoder_file.string();
  load_state_dict(*model, renamed, bind);
  model->eval();
  return model;
}

AutoencoderTiny load_autoencoder_tiny(const fs::path& path, bool with_encoder) {
  SD_CHECK(fs::exists(path), path.string(), ": no such file or folder");
  if (fs::is_directory(path) && fs::exists(path / "config.json")) {
    return load_autoencoder_tiny_folder(path, with_encoder);
  }
  fs::path decoder = path;
  if (fs::is_directory(path)) {
    decoder.clear();
    for (const auto& entry : fs::directory_iterator(path)) {
      if (!ends_with(entry.path().filename().string(), "_decoder.safetensors")) continue;
      SD_CHECK(decoder.empty(), path.string(), ": more than one *_decoder.safetensors (", decoder.filename().string(),
               ", ", entry.path().filename().string(), "); name the file");
      decoder = entry.path();
    }
    SD_CHECK(!decoder.empty(), path.string(), ": neither config.json (diffusers AutoencoderTiny) nor a ",
             "*_decoder.safetensors (original TAESD, e.g. taesd_decoder.safetensors)");
  }
  const std::string name = decoder.filename().string();
  SD_CHECK(ends_with(name, "_decoder.safetensors"), decoder.string(), ": expected an original TAESD decoder file ",
           "(*_decoder.safetensors) or a diffusers AutoencoderTiny folder");
  fs::path encoder;
  if (with_encoder) {
    const auto candidate =
        decoder.parent_path() /
        (name.substr(0, name.size() - std::string("_decoder.safetensors").size()) + "_encoder.safetensors");
    if (fs::exists(candidate)) encoder = candidate;
  }
  return load_autoencoder_tiny_original(decoder, encoder);
}

}  // namespace sd
