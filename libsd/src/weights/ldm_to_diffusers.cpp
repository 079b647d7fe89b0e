// LDM single-file checkpoint -> diffusers names. The rules are module prefixes generated from the
// layout ("input_blocks.4.1." -> "down_blocks.1.attentions.0."), plus small leaf tables for the
// modules whose parameter names differ (resnets, VAE attention). A key is renamed by finding the
// rule for its module prefix, then renaming the rest through the rule's leaf table.
#include "weights/ldm_to_diffusers.h"

#include <torch/torch.h>

#include <algorithm>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "sd/error.h"

namespace sd {
namespace {

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }
bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// How the part of a key after its module prefix is renamed.
enum class Leaf {
  kKeep,          // same parameter names on both sides (convs, norms, whole transformer blocks)
  kUNetResnet,    // LDM ResBlock -> diffusers ResnetBlock2D
  kVAEResnet,     // LDM ResnetBlock -> diffusers ResnetBlock2D
  kVAEAttention,  // LDM AttnBlock (1x1 convs) -> diffusers Attention (linears)
};

using LeafTable = std::vector<std::pair<std::string_view, std::string_view>>;

const LeafTable kUNetResnetLeaves = {
    {"in_layers.0.", "norm1."},  {"in_layers.2.", "conv1."},  {"emb_layers.1.", "time_emb_proj."},
    {"out_layers.0.", "norm2."}, {"out_layers.3.", "conv2."}, {"skip_connection.", "conv_shortcut."},
};
const LeafTable kVAEResnetLeaves = {
    {"norm1.", "norm1."}, {"conv1.", "conv1."}, {"norm2.", "norm2."}, {"conv2.", "conv2."},
    {"nin_shortcut.", "conv_shortcut."},
};
const LeafTable kVAEAttentionLeaves = {
    {"norm.", "group_norm."}, {"q.", "to_q."}, {"k.", "to_k."}, {"v.", "to_v."}, {"proj_out.", "to_out.0."},
};

struct PrefixRule {
  std::string diffusers;  // replaces the LDM module prefix; ends with '.'
  Leaf leaf = Leaf::kKeep;
};
// LDM module prefix (ending with '.') -> rule. No rule's prefix is a prefix of another's, so the
// first match while extending a key dot by dot is the only one.
using RuleTable = std::unordered_map<std::string, PrefixRule>;

std::string str(int i) { return std::to_string(i); }

void add_rule(RuleTable& rules, std::string ldm, std::string diffusers, Leaf leaf = Leaf::kKeep) {
  rules.emplace(std::move(ldm), PrefixRule{std::move(diffusers), leaf});
}

void check_layout(const UNetLayout& unet, const VAELayout& vae) {
  SD_CHECK(unet.num_blocks >= 1 && unet.layers_per_block >= 1, "UNet layout: expected num_blocks >= 1 and ",
           "layers_per_block >= 1, got ", unet.num_blocks, " and ", unet.layers_per_block);
  SD_CHECK(unet.down_has_attention.size() == static_cast<size_t>(unet.num_blocks) &&
               unet.up_has_attention.size() == static_cast<size_t>(unet.num_blocks),
           "UNet layout: down_has_attention and up_has_attention need ", unet.num_blocks, " entries, got ",
           unet.down_has_attention.size(), " and ", unet.up_has_attention.size());
  SD_CHECK(vae.num_blocks >= 1 && vae.layers_per_block >= 1, "VAE layout: expected num_blocks >= 1 and ",
           "layers_per_block >= 1, got ", vae.num_blocks, " and ", vae.layers_per_block);
}

// LDM's UNetModel keeps its down path as one flat list "input_blocks.K" (conv_in, then per block
// `layers_per_block` [resnet, attention?] entries and a downsampler except after the last block) and
// its up path as "output_blocks.K" (per block `layers_per_block + 1` [resnet, attention?, upsampler?]
// entries). Keys below are relative to "model.diffusion_model.".
RuleTable unet_rules(const UNetLayout& layout) {
  RuleTable rules;
  add_rule(rules, "time_embed.0.", "time_embedding.linear_1.");
  add_rule(rules, "time_embed.2.", "time_embedding.linear_2.");
  add_rule(rules, "input_blocks.0.0.", "conv_in.");
  add_rule(rules, "out.0.", "conv_norm_out.");
  add_rule(rules, "out.2.", "conv_out.");

  const int last = layout.num_blocks - 1;
  int k = 1;
  for (int b = 0; b < layout.num_blocks; ++b) {
    const std::string down = "down_blocks." + str(b) + ".";
    for (int l = 0; l < layout.layers_per_block; ++l, ++k) {
      const std::string in = "input_blocks." + str(k) + ".";
      add_rule(rules, in + "0.", down + "resnets." + str(l) + ".", Leaf::kUNetResnet);
      if (layout.down_has_attention[b]) add_rule(rules, in + "1.", down + "attentions." + str(l) + ".");
    }
    if (b < last) add_rule(rules, "input_blocks." + str(k++) + ".0.op.", down + "downsamplers.0.conv.");
  }

  add_rule(rules, "middle_block.0.", "mid_block.resnets.0.", Leaf::kUNetResnet);
  add_rule(rules, "middle_block.1.", "mid_block.attentions.0.");
  add_rule(rules, "middle_block.2.", "mid_block.resnets.1.", Leaf::kUNetResnet);

  k = 0;
  for (int b = 0; b < layout.num_blocks; ++b) {
    const std::string up = "up_blocks." + str(b) + ".";
    for (int l = 0; l <= layout.layers_per_block; ++l, ++k) {
      const std::string out = "output_blocks." + str(k) + ".";
      add_rule(rules, out + "0.", up + "resnets." + str(l) + ".", Leaf::kUNetResnet);
      int next = 1;
      if (layout.up_has_attention[b]) add_rule(rules, out + str(next++) + ".", up + "attentions." + str(l) + ".");
      if (l == layout.layers_per_block && b < last) {
        add_rule(rules, out + str(next) + ".conv.", up + "upsamplers.0.conv.");
      }
    }
  }
  return rules;
}

// LDM's VAE numbers the decoder's up path from the lowest resolution ("up.0" has the fewest
// channels and runs last); diffusers numbers its up_blocks in execution order. Keys below are
// relative to "first_stage_model.".
RuleTable vae_rules(const VAELayout& layout) {
  RuleTable rules;
  for (const std::string side : {"encoder.", "decoder."}) {
    add_rule(rules, side + "conv_in.", side + "conv_in.");
    add_rule(rules, side + "conv_out.", side + "conv_out.");
    add_rule(rules, side + "norm_out.", side + "conv_norm_out.");
    add_rule(rules, side + "mid.block_1.", side + "mid_block.resnets.0.", Leaf::kVAEResnet);
    add_rule(rules, side + "mid.attn_1.", side + "mid_block.attentions.0.", Leaf::kVAEAttention);
    add_rule(rules, side + "mid.block_2.", side + "mid_block.resnets.1.", Leaf::kVAEResnet);
  }
  const int last = layout.num_blocks - 1;
  for (int b = 0; b < layout.num_blocks; ++b) {
    const std::string ldm = "encoder.down." + str(b) + ".";
    const std::string diffusers = "encoder.down_blocks." + str(b) + ".";
    for (int l = 0; l < layout.layers_per_block; ++l) {
      add_rule(rules, ldm + "block." + str(l) + ".", diffusers + "resnets." + str(l) + ".", Leaf::kVAEResnet);
    }
    if (b < last) add_rule(rules, ldm + "downsample.conv.", diffusers + "downsamplers.0.conv.");
  }
  for (int i = 0; i < layout.num_blocks; ++i) {
    const int b = last - i;
    const std::string ldm = "decoder.up." + str(i) + ".";
    const std::string diffusers = "decoder.up_blocks." + str(b) + ".";
    for (int l = 0; l <= layout.layers_per_block; ++l) {
      add_rule(rules, ldm + "block." + str(l) + ".", diffusers + "resnets." + str(l) + ".", Leaf::kVAEResnet);
    }
    if (b < last) add_rule(rules, ldm + "upsample.conv.", diffusers + "upsamplers.0.conv.");
  }
  add_rule(rules, "quant_conv.", "quant_conv.");
  add_rule(rules, "post_quant_conv.", "post_quant_conv.");
  return rules;
}

const LeafTable* leaf_table(Leaf leaf) {
  switch (leaf) {
    case Leaf::kUNetResnet: return &kUNetResnetLeaves;
    case Leaf::kVAEResnet: return &kVAEResnetLeaves;
    case Leaf::kVAEAttention: return &kVAEAttentionLeaves;
    case Leaf::kKeep: break;
  }
  return nullptr;
}

// The diffusers name of `name` (relative to its component), or "" when no rule matches.
std::string rename(const RuleTable& rules, std::string_view name, Leaf* leaf_kind) {
  for (size_t dot = name.find('.'); dot != std::string_view::npos; dot = name.find('.', dot + 1)) {
    auto it = rules.find(std::string(name.substr(0, dot + 1)));
    if (it == rules.end()) continue;
    const std::string_view rest = name.substr(dot + 1);
    if (rest.empty()) return {};
    *leaf_kind = it->second.leaf;
    const LeafTable* table = leaf_table(it->second.leaf);
    if (table == nullptr) return it->second.diffusers + std::string(rest);
    // Leaf-table modules hold only direct parameters: "<leaf>.weight" / "<leaf>.bias".
    for (const auto& [ldm_leaf, diffusers_leaf] : *table) {
      if (!starts_with(rest, ldm_leaf)) continue;
      const std::string_view param = rest.substr(ldm_leaf.size());
      if (param != "weight" && param != "bias") return {};
      return it->second.diffusers + std::string(diffusers_leaf) + std::string(param);
    }
    return {};
  }
  return {};
}

// A [C,C,1,1] 1x1-conv weight as the [C,C] a linear layer expects; a view, never a copy.
at::Tensor as_linear_weight(const at::Tensor& weight) {
  if (weight.dim() == 4 && weight.size(2) == 1 && weight.size(3) == 1) {
    return weight.reshape({weight.size(0), weight.size(1)});
  }
  return weight;
}

// Buffers of LDM's DDPM wrapper (the training noise schedule), stored at the top level.
bool is_schedule_buffer(std::string_view key) {
  static const char* const kNames[] = {
      "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
      "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
      "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
      "logvar", "lvlb_weights",
  };
  for (const char* name : kNames) {
    if (key == name) return true;
  }
  return false;
}

// Known non-weights: the noise schedule, EMA copies and counters (inference uses the weights the
// checkpoint was published with), constant position_ids buffers, and the VAE's training loss
// (LPIPS + discriminator) that VAE fine-tune checkpoints carry.
bool is_ignored(std::string_view key) {
  return is_schedule_buffer(key) || starts_with(key, "model_ema.") || ends_with(key, ".position_ids") ||
         starts_with(key, "first_stage_model.loss.");
}

constexpr std::string_view kUNetPrefix = "model.diffusion_model.";
constexpr std::string_view kVAEPrefix = "first_stage_model.";
constexpr std::string_view kCLIPPrefix = "cond_stage_model.transformer.";
constexpr std::string_view kOpenCLIPPrefix = "cond_stage_model.model.";

// Adds `tensor` as `name`, refusing a second key that renames to the same name.
void put(StateDict& dict, std::unordered_map<std::string, std::string>& sources, const char* component,
         std::string name, const std::string& source, at::Tensor tensor) {
  auto [it, fresh] = sources.emplace(std::string(component) + name, source);
  SD_CHECK(fresh, "single-file checkpoint: keys '", it->second, "' and '", source, "' both rename to ", component,
           " '", name, "'");
  dict.emplace(std::move(name), std::move(tensor));
}

// SD 2.x conditions on OpenCLIP ViT-H's text tower: the architecture of transformers'
// CLIPTextModel under other names, with q/k/v packed into one in_proj (PyTorch's
// nn.MultiheadAttention: rows [q; k; v]). Keys below are relative to "cond_stage_model.model.".
const LeafTable kOpenCLIPTopLevel = {
    {"positional_embedding", "text_model.embeddings.position_embedding.weight"},
    {"token_embedding.weight", "text_model.embeddings.token_embedding.weight"},
    {"ln_final.weight", "text_model.final_layer_norm.weight"},
    {"ln_final.bias", "text_model.final_layer_norm.bias"},
};
const LeafTable kOpenCLIPLayerLeaves = {
    {"ln_1.", "layer_norm1."},     {"ln_2.", "layer_norm2."},
    {"mlp.c_fc.", "mlp.fc1."},     {"mlp.c_proj.", "mlp.fc2."},
    {"attn.out_proj.", "self_attn.out_proj."},
};
constexpr std::string_view kOpenCLIPLayers = "transformer.resblocks.";

// N of "transformer.resblocks.N.<rest>" (and <rest> in *rest), or -1.
int openclip_layer(std::string_view name, std::string_view* rest) {
  if (!starts_with(name, kOpenCLIPLayers)) return -1;
  name.remove_prefix(kOpenCLIPLayers.size());
  const size_t dot = name.find('.');
  if (dot == 0 || dot == std::string_view::npos || dot > 6) return -1;
  int layer = 0;
  for (char c : name.substr(0, dot)) {
    if (c < '0' || c > '9') return -1;
    layer = layer * 10 + (c - '0');
  }
  *rest = name.substr(dot + 1);
  return layer;
}

// One "cond_stage_model.model.*" key into out.text_encoder (or ignored/unknown).
void convert_openclip_key(const std::string& key, std::string_view name, const at::Tensor& tensor, int last_layer,
                          SplitCheckpoint& out, std::unordered_map<std::string, std::string>& sources) {
  for (const auto& [openclip, diffusers] : kOpenCLIPTopLevel) {
    if (name == openclip) return put(out.text_encoder, sources, "text_encoder", std::string(diffusers), key, tensor);
  }
  // The projection into the joint image-text space and the contrastive temperature: SD uses the
  // token hidden states, not the pooled projection.
  if (name == "text_projection" || name == "logit_scale") return out.ignored.push_back(key);
  std::string_view rest;
  const int layer = openclip_layer(name, &rest);
  if (layer < 0) return out.unknown.push_back(key);
  if (layer == last_layer) return out.ignored.push_back(key);
  const std::string prefix = "text_model.encoder.layers." + str(layer) + ".";
  if (rest == "attn.in_proj_weight" || rest == "attn.in_proj_bias") {
    const bool weight = rest == "attn.in_proj_weight";
    const bool packed = weight ? tensor.dim() == 2 && tensor.size(0) == 3 * tensor.size(1)
                               : tensor.dim() == 1 && tensor.size(0) % 3 == 0;
    SD_CHECK(packed, "single-file checkpoint: '", key, "': expected packed q/k/v of shape ",
             weight ? "[3C, C]" : "[3C]", ", got ", tensor.sizes());
    const auto qkv = tensor.chunk(3, 0);  // views
    const char* param = weight ? "weight" : "bias";
    put(out.text_encoder, sources, "text_encoder", prefix + "self_attn.q_proj." + param, key, qkv[0]);
    put(out.text_encoder, sources, "text_encoder", prefix + "self_attn.k_proj." + param, key, qkv[1]);
    put(out.text_encoder, sources, "text_encoder", prefix + "self_attn.v_proj." + param, key, qkv[2]);
    return;
  }
  for (const auto& [openclip, diffusers] : kOpenCLIPLayerLeaves) {
    if (!starts_with(rest, openclip)) continue;
    const std::string_view param = rest.substr(openclip.size());
    if (param != "weight" && param != "bias") break;
    return put(out.text_encoder, sources, "text_encoder", prefix + std::string(diffusers) + std::string(param), key,
               tensor);
  }
  out.unknown.push_back(key);
}

}  // namespace

SplitCheckpoint ldm_to_diffusers(const StateDict& checkpoint, const UNetLayout& unet, const VAELayout& vae) {
  check_layout(unet, vae);
  const RuleTable unet_table = unet_rules(unet);
  const RuleTable vae_table = vae_rules(vae);
  SplitCheckpoint out;
  std::unordered_map<std::string, std::string> sources;  // component + diffusers name -> checkpoint key
  // SD 2.x uses the penultimate OpenCLIP layer (then ln_final), so diffusers' SD 2 text encoders
  // have one layer less than the checkpoint: the last one is dropped, as diffusers' converter does.
  int last_openclip_layer = -1;
  for (const auto& entry : checkpoint) {
    std::string_view rest;
    const std::string_view k = entry.first;
    if (starts_with(k, kOpenCLIPPrefix)) {
      last_openclip_layer = std::max(last_openclip_layer, openclip_layer(k.substr(kOpenCLIPPrefix.size()), &rest));
    }
  }
  for (const auto& [key, tensor] : checkpoint) {
    const std::string_view k = key;
    if (is_ignored(k)) {
      out.ignored.push_back(key);
      continue;
    }
    Leaf leaf = Leaf::kKeep;
    if (starts_with(k, kUNetPrefix)) {
      std::string name = rename(unet_table, k.substr(kUNetPrefix.size()), &leaf);
      if (name.empty()) {
        out.unknown.push_back(key);
      } else {
        put(out.unet, sources, "unet", std::move(name), key, tensor);
      }
    } else if (starts_with(k, kVAEPrefix)) {
      std::string name = rename(vae_table, k.substr(kVAEPrefix.size()), &leaf);
      if (name.empty()) {
        out.unknown.push_back(key);
      } else {
        // q/k/v/proj_out are 1x1 convs in LDM and linears in diffusers; the GroupNorm stays 1-d.
        const bool linear =
            leaf == Leaf::kVAEAttention && ends_with(name, ".weight") && !ends_with(name, "group_norm.weight");
        put(out.vae, sources, "vae", std::move(name), key, linear ? as_linear_weight(tensor) : tensor);
      }
    } else if (starts_with(k, kCLIPPrefix)) {
      // transformers' CLIPTextModel names start with "text_model."; checkpoints saved from older
      // transformers versions lack that level.
      std::string_view rest = k.substr(kCLIPPrefix.size());
      std::string name = starts_with(rest, "text_model.") ? std::string(rest) : "text_model." + std::string(rest);
      const bool known = starts_with(name, "text_model.embeddings.") ||
                         starts_with(name, "text_model.encoder.layers.") ||
                         starts_with(name, "text_model.final_layer_norm.");
      if (known) {
        put(out.text_encoder, sources, "text_encoder", std::move(name), key, tensor);
      } else {
        out.unknown.push_back(key);
      }
    } else if (starts_with(k, kOpenCLIPPrefix)) {
      convert_openclip_key(key, k.substr(kOpenCLIPPrefix.size()), tensor, last_openclip_layer, out, sources);
    } else {
      out.unknown.push_back(key);
    }
  }
  return out;
}

void rename_legacy_vae_attention(StateDict& vae) {
  static const std::pair<std::string_view, std::string_view> kLegacy[] = {
      {"query.", "to_q."}, {"key.", "to_k."}, {"value.", "to_v."}, {"proj_attn.", "to_out.0."}};
  static const std::string_view kProjections[] = {"to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight"};
  StateDict renamed;
  for (auto& [key, tensor] : vae) {
    // "<prefix>.attentions.N.<leaf>.<param>": find the attention module, then its leaf.
    std::string name = key;
    constexpr std::string_view kAttentions = ".attentions.";
    const size_t at = key.find(kAttentions);
    const size_t module_end = at == std::string::npos ? at : key.find('.', at + kAttentions.size());
    if (module_end != std::string::npos) {
      const std::string_view leaf = std::string_view(key).substr(module_end + 1);
      for (const auto& [legacy, current] : kLegacy) {
        if (starts_with(leaf, legacy)) {
          name = key.substr(0, module_end + 1) + std::string(current) + std::string(leaf.substr(legacy.size()));
          SD_CHECK(vae.count(name) == 0, "VAE weights: '", key, "' (legacy name) and '", name,
                   "' are both present");
          break;
        }
      }
      for (const auto& projection : kProjections) {
        if (std::string_view(name).substr(module_end + 1) == projection) {
          tensor = as_linear_weight(tensor);
          break;
        }
      }
    }
    renamed.emplace(std::move(name), std::move(tensor));
  }
  vae = std::move(renamed);
}

}  // namespace sd
