// LoRA files without a model: --lora's FILE[:SCALE], recognising a LoRA file, describing one.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "lora/lora_file.h"
#include "lora/lora_keys.h"
#include "sd/error.h"
#include "sd/lora.h"
#include "sd/safetensors.h"

namespace sd {

LoraSpec parse_lora_spec(const std::string& text) {
  LoraSpec spec;
  spec.path = text;
  const size_t colon = text.rfind(':');
  if (colon != std::string::npos && colon + 1 < text.size()) {
    const std::string number = text.substr(colon + 1);
    char* end = nullptr;
    errno = 0;
    const double scale = std::strtod(number.c_str(), &end);
    if (end != number.c_str() && *end == '\0') {
      SD_CHECK(errno == 0 && std::isfinite(scale), "LoRA '", text, "': the scale '", number,
               "' is not a finite number");
      spec.path = text.substr(0, colon);
      spec.scale = scale;
    }
  }
  SD_CHECK(!spec.path.empty(), "LoRA '", text, "': expected FILE or FILE:SCALE");
  return spec;
}

bool is_lora_file(const std::filesystem::path& path) {
  if (is_pickle_file(path) || !std::filesystem::is_regular_file(path)) return false;
  SafetensorsFile file(path);
  std::vector<std::string> keys;
  for (const auto& e : file.entries()) keys.push_back(e.name);
  return lora::looks_like_lora(keys);
}

LoraFileInfo inspect_lora(const std::filesystem::path& path) {
  const lora::LoraFile file = lora::read_lora_file(path);
  LoraFileInfo info;
  info.format = lora::format_name(file.format);
  bool ldm = false, diffusers = false;
  for (const lora::LoraModule& m : file.modules) {
    const bool unet = m.component == lora::Component::kUNet;
    (unet ? info.unet_modules : info.text_encoder_modules)++;
    if (unet && m.underscored) (lora::is_ldm_unet_name(m.name) ? ldm : diffusers) = true;
    const bool conv = m.down.dim() == 4 && (m.down.size(2) > 1 || m.down.size(3) > 1);
    (conv ? info.conv_modules : info.linear_modules)++;
    info.min_rank = info.min_rank == 0 ? m.rank : std::min(info.min_rank, m.rank);
    info.max_rank = std::max(info.max_rank, m.rank);
    if (m.has_alpha) {
      info.min_alpha = info.modules_with_alpha == 0 ? m.alpha : std::min(info.min_alpha, m.alpha);
      info.max_alpha = info.modules_with_alpha == 0 ? m.alpha : std::max(info.max_alpha, m.alpha);
      ++info.modules_with_alpha;
    }
    info.modules.push_back(std::string(lora::component_name(m.component)) + ":" + m.name);
  }
  if (ldm || diffusers) info.unet_naming = ldm && diffusers ? "mixed" : ldm ? "ldm" : "diffusers";
  for (const std::string& u : file.unknown) info.modules.push_back("unknown:" + u);
  return info;
}

}  // namespace sd
