#pragma once
// A model's configs against its weight files' tensor shapes, before any module is built: a config
// that does not describe its weights (another model's config.json, an edited field) is one error
// naming the config field, the value it gives and the value the weights have, instead of a
// build sized by the config (possibly huge) followed by a list of mismatched tensors.
// Only the shapes are read (a safetensors header has them before any data is touched). Tensors
// that are absent are left to the binder, which lists missing keys.
#include <string>

#include "models/configs.h"
#include "sd/safetensors.h"

namespace sd {

// `config_origin` names the config file, `weights_origin` the weights (file, or file and part).
// The weights are by diffusers names (a single file's after ldm_to_diffusers).
void check_unet_weights(const UNetConfig& config, const StateDict& weights, const std::string& config_origin,
                        const std::string& weights_origin);
void check_vae_weights(const VAEConfig& config, const StateDict& weights, const std::string& config_origin,
                       const std::string& weights_origin);
void check_text_encoder_weights(const CLIPTextConfig& config, const StateDict& weights,
                                const std::string& config_origin, const std::string& weights_origin);

}  // namespace sd
