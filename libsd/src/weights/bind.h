#pragma once
// Binding a state dict to a module: strict name + shape match, one error that lists everything wrong.
#include <torch/torch.h>

#include <string>
#include <vector>

#include "sd/inspect.h"
#include "sd/safetensors.h"

namespace sd {

struct BindOptions {
  std::string origin;                       // the file(s) the weights came from, for messages
  std::vector<std::string> ignore_prefixes;  // state-dict keys to skip (non-weights, unused parts)
};

// How `weights` differ from what `module` expects, by name and shape; weights whose key starts
// with one of `ignore_prefixes` are never unexpected. Missing and mismatched keys in the module's
// order (parameters, then buffers), unexpected ones in the weights' (by name).
KeyComparison compare_weights(const torch::nn::Module& module, const StateDict& weights,
                              const std::vector<std::string>& ignore_prefixes = {});

// Copies every parameter and buffer of `module` from `weights` (converting dtype to the module's).
// Throws one sd::Error listing up to 10 missing and 10 unexpected keys (with counts) and every
// shape mismatch.
void load_state_dict(torch::nn::Module& module, const StateDict& weights, const BindOptions& options);

// The names and shapes a module expects, for `sd inspect --keys` and tests.
std::vector<std::pair<std::string, std::vector<int64_t>>> expected_keys(const torch::nn::Module& module);

}  // namespace sd
