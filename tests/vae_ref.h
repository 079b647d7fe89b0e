#pragma once
// The VAE reference data diffusers recorded (tests/data/vae: tests/reference/make_vae_cases.py and
// make_vae_single_file.py): where it is, its manifest and a case's tensors.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "sd/safetensors.h"

namespace vae_ref {

inline std::filesystem::path dir() { return std::filesystem::path(LIBSD_SOURCE_DIR) / "tests/data/vae"; }

inline const nlohmann::json& manifest() {
  static const nlohmann::json m = [] {
    std::ifstream in(dir() / "manifest.json");
    if (!in) throw std::runtime_error("cannot open " + (dir() / "manifest.json").string());
    return nlohmann::json::parse(in);
  }();
  return m;
}

// A case's inputs and diffusers' outputs, by the names in its manifest entry.
inline sd::StateDict case_tensors(const nlohmann::json& entry) {
  return sd::load_safetensors(dir() / (entry["name"].get<std::string>() + ".safetensors"));
}

}  // namespace vae_ref
