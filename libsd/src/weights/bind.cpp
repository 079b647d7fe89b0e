#include "weights/bind.h"

#include <set>
#include <sstream>

#include "sd/error.h"

namespace sd {

std::vector<std::pair<std::string, std::vector<int64_t>>> expected_keys(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  for (const auto& p : module.named_parameters(true)) out.emplace_back(p.key(), p.value().sizes().vec());
  for (const auto& b : module.named_buffers(true)) out.emplace_back(b.key(), b.value().sizes().vec());
  return out;
}

void load_state_dict(torch::nn::Module& module, const StateDict& weights, const BindOptions& options) {
  auto ignored = [&](const std::string& key) {
    for (const auto& prefix : options.ignore_prefixes) {
      if (key.compare(0, prefix.size(), prefix) == 0) return true;
    }
    return false;
  };
  std::vector<std::pair<std::string, torch::Tensor>> targets;
  for (const auto& p : module.named_parameters(true)) targets.emplace_back(p.key(), p.value());
  for (const auto& b : module.named_buffers(true)) targets.emplace_back(b.key(), b.value());

  std::vector<std::string> missing, mismatched;
  std::set<std::string> used;
  for (const auto& [name, target] : targets) {
    auto it = weights.find(name);
    if (it == weights.end()) {
      missing.push_back(name);
      continue;
    }
    used.insert(name);
    if (it->second.sizes() != target.sizes()) {
      std::ostringstream s;
      s << "'" << name << "': file has " << it->second.sizes() << ", model expects " << target.sizes();
      mismatched.push_back(s.str());
    }
  }
  std::vector<std::string> unexpected;
  for (const auto& [name, tensor] : weights) {
    if (!used.count(name) && !ignored(name)) unexpected.push_back(name);
  }
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::ostringstream s;
    s << options.origin << ": weights do not match the model:";
    auto list = [&](const char* what, const std::vector<std::string>& keys, size_t limit) {
      if (keys.empty()) return;
      s << "\n  " << keys.size() << " " << what << ":";
      for (size_t i = 0; i < keys.size() && i < limit; ++i) s << "\n    " << keys[i];
      if (keys.size() > limit) s << "\n    ... and " << keys.size() - limit << " more";
    };
    list("missing keys", missing, 10);
    list("unexpected keys", unexpected, 10);
    list("shape mismatches", mismatched, 20);
    throw Error(s.str());
  }
  torch::NoGradGuard no_grad;
  for (auto& [name, target] : targets) target.copy_(weights.at(name));
}

}  // namespace sd
