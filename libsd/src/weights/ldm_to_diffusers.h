#pragma once
// Single-file Stable Diffusion checkpoints (the original CompVis/LDM layout: one file holding
// "model.diffusion_model.*", "first_stage_model.*" and "cond_stage_model.transformer.*") renamed to
// the diffusers layout the models load (unet/, vae/, text_encoder/ names). Also the legacy VAE
// attention names that older diffusers files still carry.
//
// Renaming never copies: tensors keep viewing the checkpoint's storage (a [C,C,1,1] 1x1-conv
// attention weight becomes a [C,C] view).
#include <string>
#include <vector>

#include "sd/safetensors.h"

namespace sd {

// What the LDM UNet key numbering depends on, from the diffusers UNet config.
struct UNetLayout {
  int num_blocks = 4;        // len(block_out_channels)
  int layers_per_block = 2;  // resnets per down block; up blocks have one more
  std::vector<bool> down_has_attention{true, true, true, false};  // CrossAttnDownBlock2D vs DownBlock2D
  std::vector<bool> up_has_attention{false, true, true, true};    // CrossAttnUpBlock2D vs UpBlock2D
};

// What the LDM VAE key numbering depends on, from the diffusers VAE config.
struct VAELayout {
  int num_blocks = 4;  // len(block_out_channels)
  int layers_per_block = 2;
};

struct SplitCheckpoint {
  StateDict unet;          // e.g. "down_blocks.0.attentions.0.proj_in.weight"
  StateDict vae;           // e.g. "decoder.mid_block.attentions.0.to_q.weight"
  StateDict text_encoder;  // e.g. "text_model.encoder.layers.0.self_attn.q_proj.weight"
  std::vector<std::string> ignored;  // known non-weight keys that were dropped (betas, model_ema.*, position_ids, ...)
  std::vector<std::string> unknown;  // keys no rule matched; the caller decides whether that is an error
};

// Splits and renames a single-file checkpoint. Throws sd::Error for an inconsistent layout, for two
// keys that rename to the same name, and for an OpenCLIP text encoder ("cond_stage_model.model.*",
// SD 2.x), which is not supported.
SplitCheckpoint ldm_to_diffusers(const StateDict& checkpoint, const UNetLayout& unet = {}, const VAELayout& vae = {});

// In a diffusers-layout VAE: "<prefix>.attentions.N.query/key/value/proj_attn.*" (older diffusers)
// become "to_q/to_k/to_v/to_out.0.*", and every attention projection weight stored as a [C,C,1,1]
// 1x1 conv becomes the [C,C] the linear layers expect. Throws sd::Error if a legacy name and its
// new name are both present.
void rename_legacy_vae_attention(StateDict& vae);

}  // namespace sd
