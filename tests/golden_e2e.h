#pragma once
// The golden end-to-end cases (e2e/*): their recorded settings as libsd's generate options.
#include <nlohmann/json.hpp>
#include <string>

#include "sd/pipeline.h"
#include "sd/safetensors.h"

namespace golden {

// <dir>/<name>.json: the settings diffusers ran the case with.
nlohmann::json case_json(const std::string& name);

// The case's prompt settings, scheduler, size and noise (its seed, or its recorded initial
// latents where diffusers was given latents), with every step's latents kept.
sd::GenerateOptions e2e_options(const nlohmann::json& meta, const sd::StateDict& ref);

// CHECKs a generation made with e2e_options against the case: initial latents, timesteps (integer
// ones exactly, fractional ones within 1e-3), every step's latents, the image within the case's
// tolerances and its 8-bit version within tolerance_uint8 levels (default 1).
void check_e2e_result(const sd::GenerateResult& result, const sd::StateDict& ref, const nlohmann::json& entry);

}  // namespace golden
