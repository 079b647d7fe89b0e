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

}  // namespace golden
