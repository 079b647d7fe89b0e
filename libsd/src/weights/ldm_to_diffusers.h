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
  // Known keys that were dropped: non-weights (betas, model_ema.*, position_ids, ...) and weights SD
  // inference does not use (OpenCLIP's text_projection, logit_scale and last layer).
  std::vector<std::string> ignored;
  std::vector<std::string> unknown;  // keys no rule matched; the caller decides whether that is an error
};

// Splits and renames a single-file checkpoint. The text encoder may be SD 1.x's CLIP
// ("cond_stage_model.transformer.*") or SD 2.x's OpenCLIP ("cond_stage_model.model.*": packed
// q/k/v split into views; its last layer is dropped, since SD 2.x conditions on the penultimate one
// and diffusers' SD 2 text encoder config has one layer less). Throws sd::Error for an inconsistent
// layout, for two keys that rename to the same name, and for a packed q/k/v of the wrong shape.
SplitCheckpoint ldm_to_diffusers(const StateDict& checkpoint, const UNetLayout& unet = {}, const VAELayout& vae = {});

// In a diffusers-layout VAE: "<prefix>.attentions.N.query/key/value/proj_attn.*" (older diffusers)
// become "to_q/to_k/to_v/to_out.0.*", and every attention projection weight stored as a [C,C,1,1]
// 1x1 conv becomes the [C,C] the linear layers expect. Throws sd::Error if a legacy name and its
// new name are both present.
void rename_legacy_vae_attention(StateDict& vae);

}  // namespace sd
