#pragma once
// Loading the models of a pipeline: diffusers folders, single-file checkpoints, random weights.
#include <torch/torch.h>

#include <filesystem>
#include <string>

#include "models/clip_text.h"
#include "models/unet.h"
#include "models/vae.h"
#include "models/vae_tiny.h"
#include "sd/pipeline.h"
#include "sd/scheduler.h"
#include "sd/tokenizer.h"
#include "weights/ldm_to_diffusers.h"

namespace sd {

struct Components {
  CLIPTokenizer tokenizer;
  CLIPTextModel text_encoder{nullptr};
  UNet2DConditionModel unet{nullptr};
  AutoencoderKL vae{nullptr};
  AutoencoderTiny vae_tiny{nullptr};  // LoadOptions::vae_tiny: decodes (and encodes) instead of `vae`
  AutoencoderTiny preview_tiny{nullptr};  // LoadOptions::preview_vae_tiny: decodes the previews only
  SchedulerConfig scheduler_config;
  ModelInfo info;
};

// Builds the modules on the CPU in fp32 with their weights bound; the caller moves them to the
// device and dtype.
Components load_components(const std::string& model, const LoadOptions& options);

// What the single-file key numbering depends on, from the configs.
UNetLayout unet_layout_of(const UNetConfig& config);
VAELayout vae_layout_of(const VAEConfig& config);

}  // namespace sd
