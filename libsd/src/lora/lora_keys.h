#pragma once
// The tensor names of LoRA files: which format, which component, which module, which role.
#include <string>
#include <vector>

namespace sd::lora {

enum class Format { kKohya, kPeft, kDiffusersOld };
enum class Component { kUNet, kTextEncoder };
enum class Role { kDown, kUp, kAlpha };

const char* format_name(Format format);
const char* component_name(Component component);

struct ParsedKey {
  Component component = Component::kUNet;
  // kohya: the name after "lora_unet_"/"lora_te_", dots replaced by underscores as in the file
  // ("down_blocks_0_attentions_0_proj_in"); diffusers: the dotted module name with the older
  // attention-processor spellings normalised ("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q").
  std::string module;
  bool underscored = false;  // kohya naming: resolved against the model's names with '.' -> '_'
  Role role = Role::kDown;
};

// Whether `keys` look like a LoRA file's (any key with a LoRA role suffix and a known prefix).
bool looks_like_lora(const std::vector<std::string>& keys);

// The format of a LoRA file, from its keys. Throws sd::Error naming `origin` for SDXL prefixes
// (lora_te1_/lora_te2_, text_encoder_2.) and for keys of neither format.
Format detect_format(const std::vector<std::string>& keys, const std::string& origin);

// Parses one key of a file of `format`; false (and *why) for a key of no known pattern.
bool parse_key(const std::string& key, Format format, ParsedKey* out, std::string* why);

// kohya's LDM-style UNet names start with the LDM module lists ("input_blocks_1_1_...").
bool is_ldm_unet_name(const std::string& underscored);

}  // namespace sd::lora
