#pragma once
// LoRA (low-rank adaptation) files for the UNet and the text encoder, in the two formats in
// circulation, told apart by their keys:
//   * kohya / A1111: "lora_unet_<module>.lora_down.weight", ".lora_up.weight", optional ".alpha";
//     "lora_te_<module>..." for the text encoder. UNet module names in diffusers style
//     ("lora_unet_down_blocks_0_attentions_0_proj_in") or LDM style ("lora_unet_input_blocks_1_1_proj_in").
//     SDXL's "lora_te1_"/"lora_te2_" prefixes are refused.
//   * diffusers / PEFT: "unet.<module>.lora_A.weight" / ".lora_B.weight", "text_encoder.<module>...",
//     alpha in "<prefix>.<module>.alpha" keys or the metadata entry "lora_alpha"; also the older
//     attention-processor names ("...attn1.processor.to_q_lora.down.weight", "....lora.down.weight",
//     "...lora_linear_layer.down.weight").
// Linear layers and convolutions (1x1 and 3x3 "LoCon", 2-D or 4-D down/up weights).
//
// Applied as W' = W + scale * (alpha / rank) * up @ down, in fp32, then stored in the weight's own
// dtype; several LoRAs add up. alpha defaults to the rank (diffusers' and kohya's convention).
//
//   sd::LoadOptions load;
//   load.loras = {{"style.safetensors", 0.8}};                  // merged at load: no cost per step
//   auto pipe = sd::Pipeline::load("model.safetensors", load);
//   pipe.set_loras({{"other.safetensors", 1.0}});               // switched; the base weights come back exactly
//   pipe.set_loras({});                                         // the base model, bit for bit
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "sd/export.h"

namespace sd {

struct LoraSpec {
  std::filesystem::path path;
  double scale = 1.0;
};

// "FILE" or "FILE:SCALE" (the command line's --lora); the scale is the text after the last ':' when
// it is a number, so paths with colons still work. Throws sd::Error for a non-finite scale or an
// empty path.
SD_API LoraSpec parse_lora_spec(const std::string& text);

// What applying LoRAs did.
struct LoraReport {
  size_t unet_modules = 0, text_encoder_modules = 0;  // layers changed (each counted once)
  std::vector<std::string> skipped;  // lenient mode only: "<file>: <key>: <why>" for each skipped module
  double seconds = 0;                // reading, checking and merging
};

// What a LoRA file holds, without a model (for `sd inspect`).
struct LoraFileInfo {
  std::string format;        // "kohya", "diffusers-peft", "diffusers-old"
  std::string unet_naming;   // kohya: "diffusers", "ldm" or "mixed"; empty otherwise / without UNet modules
  size_t unet_modules = 0, text_encoder_modules = 0;
  size_t linear_modules = 0, conv_modules = 0;  // by the down weight's shape (4-D with a kernel > 1x1: conv)
  int64_t min_rank = 0, max_rank = 0;
  size_t modules_with_alpha = 0;
  double min_alpha = 0, max_alpha = 0;          // over the modules with an alpha
  std::vector<std::string> modules;             // "unet:<name>" / "text_encoder:<name>" as named in the file
};

// True when the file's tensor names are those of a LoRA (either format); reads the header only.
SD_API bool is_lora_file(const std::filesystem::path& path);

// Reads and checks a LoRA file (pairs complete, shapes consistent, alphas finite) without a model.
// Throws sd::Error naming the file and the offending keys.
SD_API LoraFileInfo inspect_lora(const std::filesystem::path& path);

}  // namespace sd
