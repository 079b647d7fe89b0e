#pragma once
// LoRAs merged into a pipeline's weights, switchable: the base weight of every layer a LoRA changed
// is kept (in its stored dtype, layout and device), so switching or removing LoRAs restores it
// bit for bit. Everything is read and checked before the first weight changes.
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "sd/lora.h"
#include "weights/ldm_to_diffusers.h"

namespace sd::lora {

struct LoraModels {
  torch::nn::Module* unet = nullptr;
  torch::nn::Module* text_encoder = nullptr;
  UNetLayout unet_layout;  // for kohya's LDM-style UNet names
};

class LoraState {
 public:
  // Replaces the LoRAs in effect by `loras` (empty: the base model). Strict: any key that matches
  // no layer or does not fit it is an sd::Error listing them, and nothing changes; lenient: those
  // are skipped and listed in the report. Also an error (nothing changed): unreadable or malformed
  // files, non-finite scales.
  LoraReport set(const std::vector<LoraSpec>& loras, bool lenient, const LoraModels& models);

  size_t kept_weights() const { return base_.size(); }

 private:
  struct Kept {
    torch::nn::Module* module = nullptr;
    torch::Tensor weight;  // the parameter (changed in place)
    torch::Tensor base;    // its value without LoRAs
  };
  std::map<std::string, Kept> base_;  // "unet:<name>" / "text_encoder:<name>"
};

}  // namespace sd::lora
