#include "pipeline/weight_shapes_check.h"

#include <sstream>

#include "sd/error.h"

namespace sd {
namespace {

class ShapeChecker {
 public:
  ShapeChecker(const StateDict& weights, std::string config_origin, std::string weights_origin)
      : weights_(weights), config_(std::move(config_origin)), file_(std::move(weights_origin)) {}

  bool has(const std::string& tensor) const { return weights_.count(tensor) != 0; }

  // Dimension `dim` of `tensor` must be `value`, which the config's `field` set.
  void dim(const std::string& tensor, size_t dim, const std::string& field, int64_t value) const {
    auto it = weights_.find(tensor);
    if (it == weights_.end()) return;
    const auto sizes = it->second.sizes();
    SD_CHECK(sizes.size() > dim, file_, ": tensor '", tensor, "' has shape ", sizes, ", expected at least ", dim + 1,
             " dimensions");
    SD_CHECK(sizes[dim] == value, config_, ": field '", field, "' = ", value, " does not match the weights: ", file_,
             " has ", sizes[dim], " (tensor '", tensor, "' is ", sizes, ")");
  }

  // How many of prefix0, prefix1, ... (each followed by `suffix`) the weights hold.
  int64_t count(const std::string& prefix, const std::string& suffix) const {
    int64_t n = 0;
    while (has(prefix + std::to_string(n) + suffix)) ++n;
    return n;
  }

  // The config's `field` = `value` counts what the weights hold `found` of (0: none, left to the binder).
  void count_is(const std::string& field, int64_t value, int64_t found, const std::string& what) const {
    SD_CHECK(found == 0 || found == value, config_, ": field '", field, "' = ", value,
             " does not match the weights: ", file_, " has ", found, " ", what);
  }

 private:
  const StateDict& weights_;
  std::string config_, file_;
};

std::string indexed(const char* field, size_t i) { return std::string(field) + "[" + std::to_string(i) + "]"; }

}  // namespace

void check_unet_weights(const UNetConfig& c, const StateDict& weights, const std::string& config_origin,
                        const std::string& weights_origin) {
  const ShapeChecker w(weights, config_origin, weights_origin);
  const size_t n = c.block_out_channels.size();
  w.count_is("block_out_channels", static_cast<int64_t>(n), w.count("down_blocks.", ".resnets.0.conv1.weight"),
             "down blocks");
  w.dim("conv_in.weight", 1, "in_channels", c.in_channels);
  w.dim("conv_in.weight", 0, "block_out_channels[0]", c.block_out_channels[0]);
  w.dim("conv_out.weight", 0, "out_channels", c.out_channels);
  w.count_is("layers_per_block", c.layers_per_block, w.count("down_blocks.0.resnets.", ".conv1.weight"),
             "resnets in down_blocks.0");
  for (size_t i = 0; i < n; ++i) {
    const std::string block = "down_blocks." + std::to_string(i);
    w.dim(block + ".resnets.0.conv1.weight", 0, indexed("block_out_channels", i), c.block_out_channels[i]);
    const std::string attention = block + ".attentions.0.";
    const bool has_attention = w.has(attention + "proj_in.weight");
    if (w.has(block + ".resnets.0.conv1.weight")) {
      SD_CHECK(has_attention == c.down_has_attention(i), config_origin, ": field '", indexed("down_block_types", i),
               "' = ", c.down_block_types[i], " does not match the weights: ", weights_origin, " has ",
               has_attention ? "attention (CrossAttnDownBlock2D)" : "no attention (DownBlock2D)", " in ", block);
    }
    if (!has_attention) continue;
    w.count_is(indexed("transformer_layers_per_block", i), c.transformer_layers_per_block[i],
               w.count(attention + "transformer_blocks.", ".attn1.to_q.weight"), "transformer blocks in " + block);
    w.dim(attention + "transformer_blocks.0.attn2.to_k.weight", 1, "cross_attention_dim", c.cross_attention_dim);
    const auto& proj_in = weights.at(attention + "proj_in.weight");
    const bool linear = proj_in.dim() == 2;
    SD_CHECK(linear == c.use_linear_projection, config_origin, ": field 'use_linear_projection' = ",
             c.use_linear_projection ? "true" : "false", " does not match the weights: ", weights_origin, " has ",
             linear ? "a linear" : "a 1x1 convolution", " proj_in (tensor '", attention, "proj_in.weight' is ",
             proj_in.sizes(), ")");
  }
  w.dim("mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight", 1, "cross_attention_dim",
        c.cross_attention_dim);
}

void check_vae_weights(const VAEConfig& c, const StateDict& weights, const std::string& config_origin,
                       const std::string& weights_origin) {
  const ShapeChecker w(weights, config_origin, weights_origin);
  const size_t n = c.block_out_channels.size();
  w.count_is("block_out_channels", static_cast<int64_t>(n), w.count("decoder.up_blocks.", ".resnets.0.conv1.weight"),
             "decoder up blocks");
  // The decoder's up blocks have one resnet more than layers_per_block.
  const int64_t decoder_resnets = w.count("decoder.up_blocks.0.resnets.", ".conv1.weight");
  SD_CHECK(decoder_resnets == 0 || decoder_resnets == c.layers_per_block + 1, config_origin,
           ": field 'layers_per_block' = ", c.layers_per_block, " does not match the weights: ", weights_origin,
           " has ", decoder_resnets - 1, " (", decoder_resnets, " resnets in decoder.up_blocks.0)");
  w.dim("encoder.conv_in.weight", 1, "in_channels", c.in_channels);
  w.dim("encoder.conv_in.weight", 0, "block_out_channels[0]", c.block_out_channels[0]);
  w.dim("decoder.conv_in.weight", 1, "latent_channels", c.latent_channels);
  w.dim("decoder.conv_out.weight", 0, "out_channels", c.out_channels);
  for (size_t i = 0; i < n; ++i) {
    w.dim("encoder.down_blocks." + std::to_string(i) + ".resnets.0.conv1.weight", 0, indexed("block_out_channels", i),
          c.block_out_channels[i]);
    w.dim("decoder.up_blocks." + std::to_string(i) + ".resnets.0.conv1.weight", 0,
          indexed("block_out_channels", n - 1 - i), c.block_out_channels[n - 1 - i]);
  }
}

void check_text_encoder_weights(const CLIPTextConfig& c, const StateDict& weights, const std::string& config_origin,
                                const std::string& weights_origin) {
  const ShapeChecker w(weights, config_origin, weights_origin);
  w.dim("text_model.embeddings.token_embedding.weight", 0, "vocab_size", c.vocab_size);
  w.dim("text_model.embeddings.token_embedding.weight", 1, "hidden_size", c.hidden_size);
  w.dim("text_model.embeddings.position_embedding.weight", 0, "max_position_embeddings", c.max_position_embeddings);
  w.dim("text_model.encoder.layers.0.mlp.fc1.weight", 0, "intermediate_size", c.intermediate_size);
  // More layers in the file than the config uses is how SD 2.x checkpoints come (the last is unused).
  const int64_t layers = w.count("text_model.encoder.layers.", ".mlp.fc1.weight");
  SD_CHECK(layers == 0 || layers >= c.num_hidden_layers, config_origin, ": field 'num_hidden_layers' = ",
           c.num_hidden_layers, " does not match the weights: ", weights_origin, " has ", layers, " layers");
}

}  // namespace sd
