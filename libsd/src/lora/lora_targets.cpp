#include "lora/lora_targets.h"

#include <string_view>
#include <utility>
#include <vector>

namespace sd::lora {
namespace {

std::string underscored(std::string name) {
  for (char& c : name) {
    if (c == '.') c = '_';
  }
  return name;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  size_t begin = 0;
  for (size_t at = s.find(sep); at != std::string::npos; at = s.find(sep, begin)) {
    parts.push_back(s.substr(begin, at - begin));
    begin = at + 1;
  }
  parts.push_back(s.substr(begin));
  return parts;
}

bool is_number(const std::string& s) {
  if (s.empty() || s.size() > 4) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// The resnet / sampler leaves of LDM's blocks, underscored -> dotted ("in_layers_2" -> "in_layers.2").
const std::pair<std::string_view, std::string_view> kLdmLeaves[] = {
    {"in_layers_2", "in_layers.2"},   {"emb_layers_1", "emb_layers.1"}, {"out_layers_3", "out_layers.3"},
    {"skip_connection", "skip_connection"}, {"op", "op"},          {"conv", "conv"},
};

// The diffusers name ldm_to_diffusers gives the single-file UNet key "model.diffusion_model.<ldm>".
std::string diffusers_name_of(const std::string& ldm, const UNetLayout& layout) {
  StateDict one;
  one.emplace("model.diffusion_model." + ldm, torch::empty({0}));
  SplitCheckpoint split = ldm_to_diffusers(one, layout, VAELayout{});
  return split.unet.empty() ? std::string() : split.unet.begin()->first;
}

}  // namespace

TargetIndex::TargetIndex(torch::nn::Module& model) {
  for (const auto& item : model.named_modules()) {
    torch::nn::Module& module = *item.value();
    for (const auto& p : module.named_parameters(/*recurse=*/false)) {
      if (p.key() != "weight" || (p.value().dim() != 2 && p.value().dim() != 4)) continue;
      by_name_.emplace(item.key(), Target{item.key(), &module, p.value()});
      auto [it, fresh] = by_underscored_.emplace(underscored(item.key()), item.key());
      if (!fresh) it->second.clear();
    }
  }
}

const Target* TargetIndex::find_dotted(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &it->second;
}

const Target* TargetIndex::find_underscored(const std::string& name) const {
  auto it = by_underscored_.find(name);
  if (it == by_underscored_.end() || it->second.empty()) return nullptr;
  return find_dotted(it->second);
}

const Target* find_ldm_unet(const TargetIndex& index, const std::string& name, const UNetLayout& layout) {
  // The LDM module prefix: "input_blocks.K.J.", "output_blocks.K.J.", "middle_block.J.",
  // "time_embed.J." or "out.J."; what follows is a leaf of LDM's resnets/samplers, or the
  // diffusers-named inside of a transformer (kept as is by the renaming).
  const std::vector<std::string> t = split(name, '_');
  std::string prefix;
  size_t used = 0;
  if ((t[0] == "input" || t[0] == "output") && t.size() >= 4 && t[1] == "blocks" && is_number(t[2]) &&
      is_number(t[3])) {
    prefix = t[0] + "_blocks." + t[2] + "." + t[3] + ".";
    used = 4;
  } else if (t.size() >= 3 && ((t[0] == "middle" && t[1] == "block") || (t[0] == "time" && t[1] == "embed")) &&
             is_number(t[2])) {
    prefix = t[0] + "_" + t[1] + "." + t[2] + ".";
    used = 3;
  } else if (t.size() >= 2 && t[0] == "out" && is_number(t[1])) {
    prefix = "out." + t[1] + ".";
    used = 2;
  } else {
    return nullptr;
  }
  std::string rest;
  for (size_t i = used; i < t.size(); ++i) rest += (rest.empty() ? "" : "_") + t[i];
  if (rest.empty()) {
    const std::string d = diffusers_name_of(prefix + "weight", layout);
    return d.empty() ? nullptr : index.find_dotted(d.substr(0, d.size() - std::string(".weight").size()));
  }
  for (const auto& [leaf, dotted] : kLdmLeaves) {
    if (rest != leaf) continue;
    const std::string d = diffusers_name_of(prefix + std::string(dotted) + ".weight", layout);
    if (!d.empty()) return index.find_dotted(d.substr(0, d.size() - std::string(".weight").size()));
  }
  // Inside a transformer: the prefix renames to the diffusers module, the rest is diffusers' own.
  constexpr std::string_view kProbe = "lora_probe.weight";
  const std::string d = diffusers_name_of(prefix + std::string(kProbe), layout);
  if (d.size() <= kProbe.size() || d.substr(d.size() - kProbe.size()) != kProbe) return nullptr;
  return index.find_underscored(underscored(d.substr(0, d.size() - kProbe.size())) + rest);
}

}  // namespace sd::lora
