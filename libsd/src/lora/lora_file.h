#pragma once
// Reading a LoRA file into checked (down, up, alpha) modules, before any model is involved.
#include <ATen/core/Tensor.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "lora/lora_keys.h"

namespace sd::lora {

struct LoraModule {
  Component component = Component::kUNet;
  std::string name;          // as ParsedKey::module
  bool underscored = false;  // kohya naming
  std::string key;           // the down weight's key, for messages
  at::Tensor down, up;       // CPU views of the file: down [r, in(, kh, kw)], up [out, r(, 1, 1)]
  int64_t rank = 0;
  double alpha = 0;          // the file's alpha, or the rank when it has none
  bool has_alpha = false;
};

struct LoraFile {
  std::filesystem::path path;
  Format format = Format::kKohya;
  std::vector<LoraModule> modules;
  // Keys of no known pattern: "<key>: <why>" (an error unless lenient).
  std::vector<std::string> unknown;
};

// Reads and checks `path`: every down has its up (and at most one alpha), ranks agree, up's kernel
// is 1x1, rank <= min(out, in * kh * kw), alphas and weights finite, floating-point dtypes.
// Throws one sd::Error listing every problem (with the file and the keys).
LoraFile read_lora_file(const std::filesystem::path& path);

}  // namespace sd::lora
