#include "lora/lora_file.h"

#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <sstream>

#include "sd/error.h"
#include "sd/safetensors.h"

namespace sd::lora {
namespace {

struct Parts {
  std::string down_key, up_key, alpha_key;
};

bool is_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kHalf || t == at::kBFloat16 || t == at::kDouble;
}

std::string shape_of(const at::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

// The metadata's "lora_alpha" (one alpha for every module without its own), if any.
std::optional<double> metadata_alpha(const SafetensorsFile& file, std::vector<std::string>& problems) {
  auto it = file.metadata().find("lora_alpha");
  if (it == file.metadata().end()) return std::nullopt;
  char* end = nullptr;
  const double value = std::strtod(it->second.c_str(), &end);
  if (end == it->second.c_str() || *end != '\0' || !std::isfinite(value)) {
    problems.push_back("metadata 'lora_alpha': expected a finite number, got '" + it->second + "'");
    return std::nullopt;
  }
  return value;
}

// Checks one module's tensors; appends problems, returns whether it is usable.
bool check_module(LoraModule& m, const at::Tensor& alpha, const std::string& alpha_key,
                  std::vector<std::string>& problems) {
  const size_t before = problems.size();
  auto bad = [&](const std::string& what) { problems.push_back(m.key + ": " + what); };
  if (!is_float(m.down.scalar_type()) || !is_float(m.up.scalar_type())) {
    bad("expected floating-point down/up weights, got " + std::string(c10::toString(m.down.scalar_type())) + "/" +
        c10::toString(m.up.scalar_type()));
    return false;
  }
  if ((m.down.dim() != 2 && m.down.dim() != 4) || (m.up.dim() != 2 && m.up.dim() != 4)) {
    bad("expected 2-D or 4-D down and up weights, got down " + shape_of(m.down) + ", up " + shape_of(m.up));
    return false;
  }
  m.rank = m.down.size(0);
  const int64_t fan_in = m.down.numel() / std::max<int64_t>(m.rank, 1);
  const int64_t out = m.up.size(0);
  if (m.rank < 1 || m.up.size(1) != m.rank) {
    bad("down " + shape_of(m.down) + " and up " + shape_of(m.up) + " disagree on the rank (down's first " +
        "dimension, up's second)");
  } else if (m.up.dim() == 4 && (m.up.size(2) != 1 || m.up.size(3) != 1)) {
    bad("up weight " + shape_of(m.up) + ": expected a 1x1 kernel");
  } else if (m.rank > std::min(out, fan_in)) {
    bad("rank " + std::to_string(m.rank) + " exceeds what the layer can hold (min(out " + std::to_string(out) +
        ", in " + std::to_string(fan_in) + "))");
  }
  if (alpha.defined()) {
    if (alpha.numel() != 1 || !is_float(alpha.scalar_type())) {
      problems.push_back(alpha_key + ": expected one floating-point number, got " +
                         std::string(c10::toString(alpha.scalar_type())) + " " + shape_of(alpha));
    } else {
      m.alpha = alpha.to(at::kDouble).item<double>();
      m.has_alpha = true;
      if (!std::isfinite(m.alpha)) problems.push_back(alpha_key + ": alpha is not finite (" + std::to_string(m.alpha) + ")");
    }
  }
  if (problems.size() == before) {
    if (!torch::isfinite(m.down).all().item<bool>()) bad("the down weight holds NaN or infinite values");
    if (!torch::isfinite(m.up).all().item<bool>()) bad("the up weight holds NaN or infinite values");
  }
  return problems.size() == before;
}

}  // namespace

LoraFile read_lora_file(const std::filesystem::path& path) {
  SD_CHECK(!is_pickle_file(path), path.string(), ": pickle files are never loaded (they can run code); use the ",
           ".safetensors version of this LoRA");
  SD_CHECK(std::filesystem::is_regular_file(path), "LoRA file ", path.string(), " does not exist");
  SafetensorsFile file(path);
  const std::string origin = path.string();
  std::vector<std::string> keys;
  for (const auto& e : file.entries()) keys.push_back(e.name);
  LoraFile out;
  out.path = path;
  out.format = detect_format(keys, origin);

  // Group the keys by (component, module).
  std::map<std::pair<int, std::string>, Parts> groups;
  std::map<std::pair<int, std::string>, bool> underscored;
  std::vector<std::string> problems;
  for (const std::string& key : keys) {
    ParsedKey parsed;
    std::string why;
    if (!parse_key(key, out.format, &parsed, &why)) {
      out.unknown.push_back(key + ": " + why);
      continue;
    }
    const auto id = std::make_pair(static_cast<int>(parsed.component), parsed.module);
    Parts& parts = groups[id];
    underscored[id] = parsed.underscored;
    std::string& slot = parsed.role == Role::kDown ? parts.down_key : parsed.role == Role::kUp ? parts.up_key
                                                                                                : parts.alpha_key;
    if (!slot.empty()) {
      problems.push_back(key + ": names the same module and part as '" + slot + "'");
      continue;
    }
    slot = key;
  }
  const std::optional<double> shared_alpha = metadata_alpha(file, problems);
  for (const auto& [id, parts] : groups) {
    if (parts.down_key.empty() || parts.up_key.empty()) {
      const std::string& have = !parts.down_key.empty() ? parts.down_key : !parts.up_key.empty() ? parts.up_key
                                                                                                   : parts.alpha_key;
      problems.push_back(have + ": no matching " + (parts.down_key.empty() ? "down" : "up") + " weight");
      continue;
    }
    LoraModule m;
    m.component = static_cast<Component>(id.first);
    m.name = id.second;
    m.underscored = underscored[id];
    m.key = parts.down_key;
    m.down = file.get(parts.down_key);
    m.up = file.get(parts.up_key);
    const at::Tensor alpha = parts.alpha_key.empty() ? at::Tensor() : file.get(parts.alpha_key);
    if (!check_module(m, alpha, parts.alpha_key, problems)) continue;
    if (!m.has_alpha) m.alpha = shared_alpha ? *shared_alpha : static_cast<double>(m.rank);
    out.modules.push_back(std::move(m));
  }
  if (!problems.empty()) {
    std::ostringstream s;
    s << origin << ": " << problems.size() << " problem" << (problems.size() > 1 ? "s" : "") << " in the LoRA file:";
    // One line, as every libsd error: the first problems, then how many more.
    constexpr size_t kShown = 5;
    for (size_t i = 0; i < problems.size() && i < kShown; ++i) s << (i ? "; " : " ") << problems[i];
    if (problems.size() > kShown) s << "; and " << problems.size() - kShown << " more";
    throw Error(s.str());
  }
  SD_CHECK(!out.modules.empty() || !out.unknown.empty(), origin, ": no LoRA modules (no down/up weight pairs)");
  return out;
}

}  // namespace sd::lora
