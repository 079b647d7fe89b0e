#pragma once
// The layers of a model a LoRA can change, found by the names LoRA files use for them.
#include <torch/torch.h>

#include <string>
#include <unordered_map>

#include "weights/ldm_to_diffusers.h"

namespace sd::lora {

struct Target {
  std::string name;                      // diffusers module name, "down_blocks.0.attentions.0.proj_in"
  torch::nn::Module* module = nullptr;   // the Linear or Conv2d that owns the weight
  torch::Tensor weight;                  // [out, in] or [out, in, kh, kw]
};

class TargetIndex {
 public:
  // Every module of `model` with a 2-D or 4-D "weight" parameter of its own.
  explicit TargetIndex(torch::nn::Module& model);
  // By diffusers' dotted name ("...attn1.to_q"), or kohya's underscored one ("..._attn1_to_q").
  const Target* find_dotted(const std::string& name) const;
  const Target* find_underscored(const std::string& name) const;

 private:
  std::unordered_map<std::string, Target> by_name_;
  std::unordered_map<std::string, std::string> by_underscored_;  // "" when two names collide
};

// kohya's LDM-style UNet name ("input_blocks_1_1_proj_in", "output_blocks_2_1_conv",
// "middle_block_2_out_layers_3") -> the target, through the single-file checkpoint renaming for
// this UNet's layout; nullptr when it names no layer.
const Target* find_ldm_unet(const TargetIndex& index, const std::string& underscored, const UNetLayout& layout);

}  // namespace sd::lora
