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

KeyComparison compare_weights(const torch::nn::Module& module, const StateDict& weights,
                              const std::vector<std::string>& ignore_prefixes) {
  auto ignored = [&](const std::string& key) {
    for (const auto& prefix : ignore_prefixes) {
      if (key.compare(0, prefix.size(), prefix) == 0) return true;
    }
    return false;
  };
  KeyComparison out;
  std::set<std::string> expected;
  auto check = [&](const std::string& name, const torch::Tensor& target) {
    ++out.expected;
    expected.insert(name);
    auto it = weights.find(name);
    if (it == weights.end()) {
      out.missing.push_back({name, target.scalar_type(), target.sizes().vec()});
    } else if (it->second.sizes() != target.sizes()) {
      out.mismatched.push_back({name, it->second.sizes().vec(), target.sizes().vec()});
    }
  };
  for (const auto& p : module.named_parameters(true)) check(p.key(), p.value());
  for (const auto& b : module.named_buffers(true)) check(b.key(), b.value());
  for (const auto& [name, tensor] : weights) {  // a std::map: sorted
    if (!expected.count(name) && !ignored(name)) {
      out.unexpected.push_back({name, tensor.scalar_type(), tensor.sizes().vec()});
    }
  }
  return out;
}

void load_state_dict(torch::nn::Module& module, const StateDict& weights, const BindOptions& options) {
  const KeyComparison diff = compare_weights(module, weights, options.ignore_prefixes);
  if (diff.differences() > 0) {
    std::ostringstream s;
    s << options.origin << ": weights do not match the model:";
    auto list = [&](const char* what, size_t count, size_t limit, const auto& item) {
      if (count == 0) return;
      s << "\n  " << count << " " << what << ":";
      for (size_t i = 0; i < count && i < limit; ++i) s << "\n    " << item(i);
      if (count > limit) s << "\n    ... and " << count - limit << " more";
    };
    list("missing keys", diff.missing.size(), 10, [&](size_t i) { return diff.missing[i].name; });
    list("unexpected keys", diff.unexpected.size(), 10, [&](size_t i) { return diff.unexpected[i].name; });
    list("shape mismatches", diff.mismatched.size(), 20, [&](size_t i) {
      const auto& m = diff.mismatched[i];
      std::ostringstream line;
      line << "'" << m.name << "': file has " << c10::IntArrayRef(m.file_shape) << ", model expects "
           << c10::IntArrayRef(m.model_shape);
      return line.str();
    });
    throw Error(s.str());
  }
  std::vector<std::pair<std::string, torch::Tensor>> targets;
  for (const auto& p : module.named_parameters(true)) targets.emplace_back(p.key(), p.value());
  for (const auto& b : module.named_buffers(true)) targets.emplace_back(b.key(), b.value());
  torch::NoGradGuard no_grad;
  for (auto& [name, target] : targets) target.copy_(weights.at(name));
}

}  // namespace sd
