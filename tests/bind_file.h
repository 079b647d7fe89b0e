#pragma once
// Binds a safetensors file to a module strictly (every key, every shape) and puts it in eval mode:
// how the module parity tests load a golden model's component.
#include <filesystem>
#include <string>
#include <vector>

#include "sd/safetensors.h"
#include "weights/bind.h"

namespace golden {

template <class Module>
void bind_file(Module& module, const std::filesystem::path& file, std::vector<std::string> ignore = {}) {
  sd::BindOptions options;
  options.origin = file.string();
  options.ignore_prefixes = std::move(ignore);
  sd::load_state_dict(*module, sd::load_safetensors(file), options);
  module->eval();
}

}  // namespace golden
