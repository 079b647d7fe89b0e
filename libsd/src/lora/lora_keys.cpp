// Key patterns of the two LoRA formats (see sd/lora.h). diffusers' older names are normalised to
// the module names the models use: "attn1.processor.to_q_lora" -> "attn1.to_q", "to_out_lora" ->
// "to_out.0" (UNet) / "out_proj" (text encoder), ".lora." / ".lora_linear_layer." removed.
#include "lora/lora_keys.h"

#include <string_view>
#include <utility>

#include "sd/error.h"

namespace sd::lora {
namespace {

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

constexpr std::string_view kKohyaUNet = "lora_unet_";
constexpr std::string_view kKohyaText = "lora_te_";
constexpr std::string_view kDiffusersUNet = "unet.";
constexpr std::string_view kDiffusersText = "text_encoder.";

bool is_sdxl_key(std::string_view key) {
  return starts_with(key, "lora_te1_") || starts_with(key, "lora_te2_") || starts_with(key, "text_encoder_2.");
}

// Strips `suffix` from *rest; true when it was there.
bool take_suffix(std::string* rest, std::string_view suffix) {
  if (!ends_with(*rest, suffix) || rest->size() == suffix.size()) return false;
  rest->resize(rest->size() - suffix.size());
  return true;
}

void replace_all(std::string* s, std::string_view from, std::string_view to) {
  for (size_t at = s->find(from); at != std::string::npos; at = s->find(from, at + to.size())) {
    s->replace(at, from.size(), to);
  }
}

// The old attention-processor spellings: "<attn>.to_q_lora" etc.
bool normalise_old_attention(std::string* module, Component component) {
  static const std::pair<std::string_view, std::string_view> kUNet[] = {
      {"to_q_lora", "to_q"}, {"to_k_lora", "to_k"}, {"to_v_lora", "to_v"}, {"to_out_lora", "to_out.0"}};
  static const std::pair<std::string_view, std::string_view> kText[] = {
      {"to_q_lora", "q_proj"}, {"to_k_lora", "k_proj"}, {"to_v_lora", "v_proj"}, {"to_out_lora", "out_proj"}};
  const auto& table = component == Component::kUNet ? kUNet : kText;
  for (const auto& [old_name, name] : table) {
    const std::string dotted = "." + std::string(old_name);
    if (ends_with(*module, dotted)) {
      module->resize(module->size() - old_name.size());
      module->append(name);
      return true;
    }
  }
  return false;
}

}  // namespace

const char* format_name(Format format) {
  switch (format) {
    case Format::kKohya: return "kohya";
    case Format::kPeft: return "diffusers-peft";
    case Format::kDiffusersOld: return "diffusers-old";
  }
  return "?";
}

const char* component_name(Component component) {
  return component == Component::kUNet ? "unet" : "text_encoder";
}

bool looks_like_lora(const std::vector<std::string>& keys) {
  for (const std::string& k : keys) {
    const bool prefix = starts_with(k, "lora_") || starts_with(k, kDiffusersUNet) || starts_with(k, kDiffusersText);
    const bool role = ends_with(k, ".lora_down.weight") || ends_with(k, ".lora_A.weight") ||
                      ends_with(k, "lora.down.weight") || ends_with(k, ".lora_linear_layer.down.weight");
    if (prefix && role) return true;
  }
  return false;
}

Format detect_format(const std::vector<std::string>& keys, const std::string& origin) {
  SD_CHECK(!keys.empty(), origin, ": the file holds no tensors (expected LoRA weights)");
  size_t kohya = 0, diffusers = 0, peft = 0;
  std::vector<std::string> sdxl;
  for (const std::string& k : keys) {
    if (is_sdxl_key(k)) {
      sdxl.push_back(k);
    } else if (starts_with(k, kKohyaUNet) || starts_with(k, kKohyaText)) {
      ++kohya;
    } else if (starts_with(k, kDiffusersUNet) || starts_with(k, kDiffusersText)) {
      ++diffusers;
      if (ends_with(k, ".lora_A.weight") || ends_with(k, ".lora_B.weight")) ++peft;
    }
  }
  SD_CHECK(sdxl.empty(), origin, ": an SDXL LoRA (", sdxl.size(), " keys with SDXL's second text encoder, e.g. '",
           sdxl.empty() ? "" : sdxl.front(), "'); libsd runs SD 1.x/2.x, whose LoRAs use lora_te_ / text_encoder.");
  SD_CHECK(kohya == 0 || diffusers == 0, origin, ": mixes kohya keys (lora_unet_/lora_te_, ", kohya,
           ") and diffusers keys (unet./text_encoder., ", diffusers, ")");
  SD_CHECK(kohya + diffusers > 0, origin, ": not a LoRA file: no key starts with lora_unet_, lora_te_, unet. or ",
           "text_encoder. (first key '", keys.front(), "')");
  if (kohya > 0) return Format::kKohya;
  return peft > 0 ? Format::kPeft : Format::kDiffusersOld;
}

bool parse_key(const std::string& key, Format format, ParsedKey* out, std::string* why) {
  std::string rest;
  if (format == Format::kKohya) {
    if (starts_with(key, kKohyaUNet)) {
      out->component = Component::kUNet;
      rest = key.substr(kKohyaUNet.size());
    } else if (starts_with(key, kKohyaText)) {
      out->component = Component::kTextEncoder;
      rest = key.substr(kKohyaText.size());
    } else {
      *why = "not a kohya LoRA key (expected lora_unet_ or lora_te_)";
      return false;
    }
    const size_t dot = rest.find('.');
    if (dot == std::string::npos || dot == 0) {
      *why = "no '.<role>' after the module name";
      return false;
    }
    const std::string role = rest.substr(dot + 1);
    out->module = rest.substr(0, dot);
    out->underscored = true;
    if (role == "lora_down.weight") {
      out->role = Role::kDown;
    } else if (role == "lora_up.weight") {
      out->role = Role::kUp;
    } else if (role == "alpha") {
      out->role = Role::kAlpha;
    } else {
      *why = "unsupported LoRA part '" + role + "' (expected lora_down.weight, lora_up.weight or alpha)";
      return false;
    }
    return true;
  }

  if (starts_with(key, kDiffusersUNet)) {
    out->component = Component::kUNet;
    rest = key.substr(kDiffusersUNet.size());
  } else if (starts_with(key, kDiffusersText)) {
    out->component = Component::kTextEncoder;
    rest = key.substr(kDiffusersText.size());
  } else {
    *why = "not a diffusers LoRA key (expected unet. or text_encoder.)";
    return false;
  }
  out->underscored = false;
  replace_all(&rest, ".processor.", ".");
  bool old_attention = false;
  if (take_suffix(&rest, ".lora_A.weight")) {
    out->role = Role::kDown;
  } else if (take_suffix(&rest, ".lora_B.weight")) {
    out->role = Role::kUp;
  } else if (take_suffix(&rest, ".alpha")) {
    out->role = Role::kAlpha;
  } else if (take_suffix(&rest, ".lora.down.weight") || take_suffix(&rest, ".lora_linear_layer.down.weight")) {
    out->role = Role::kDown;
  } else if (take_suffix(&rest, ".lora.up.weight") || take_suffix(&rest, ".lora_linear_layer.up.weight")) {
    out->role = Role::kUp;
  } else if (take_suffix(&rest, ".down.weight")) {
    out->role = Role::kDown;
    old_attention = true;
  } else if (take_suffix(&rest, ".up.weight")) {
    out->role = Role::kUp;
    old_attention = true;
  } else {
    *why = "unsupported LoRA part (expected .lora_A.weight, .lora_B.weight, .alpha or the older .lora.down/up.weight)";
    return false;
  }
  if (old_attention && !normalise_old_attention(&rest, out->component)) {
    *why = "'.down.weight' without an attention-processor name (to_q_lora, to_k_lora, to_v_lora, to_out_lora)";
    return false;
  }
  // An alpha may be named after the older spellings too.
  if (out->role == Role::kAlpha) normalise_old_attention(&rest, out->component);
  out->module = rest;
  return true;
}

bool is_ldm_unet_name(const std::string& n) {
  return starts_with(n, "input_blocks_") || starts_with(n, "output_blocks_") || starts_with(n, "middle_block_") ||
         starts_with(n, "time_embed_") || starts_with(n, "out_");
}

}  // namespace sd::lora
