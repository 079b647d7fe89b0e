#pragma once
// CUDA graphs for the UNet, the device-agnostic half: which evaluations share a graph (the key),
// the graphs captured so far with their static input and output buffers, and what happens where
// capture fails (remembered per key, one info line, eager from then on). The capture itself is a
// function given to the cache (unet_graph_capture.h on CUDA), so this logic is tested on the CPU.
//
// LoRAs need no recapture: lora_apply.cpp changes the weights in place (copy_), and a graph reads
// whatever the weights' storage holds when it replays. clear() frees the graphs' memory pools
// (after an out-of-memory) and forgets the failures.
#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace sd {

// What a captured UNet evaluation is specialised to: its inputs' shapes and dtypes. One cache
// belongs to one pipeline, whose precision (TF32 or not) is fixed at load.
struct UNetGraphKey {
  int64_t batch = 0;                   // the UNet's batch: the guidance doubles the images'
  int64_t height = 0, width = 0;       // latents
  int64_t channels = 0;                // input channels, an inpainting UNet's conditioning included
  int64_t timestep_entries = 1;        // 1: one timestep for the batch
  int64_t context_tokens = 0, context_dim = 0;
  c10::ScalarType dtype = c10::kFloat; // the UNet's input dtype
  bool autocast = false;

  auto tie() const {
    return std::tie(batch, height, width, channels, timestep_entries, context_tokens, context_dim, dtype, autocast);
  }
  bool operator==(const UNetGraphKey& other) const { return tie() == other.tie(); }
  bool operator<(const UNetGraphKey& other) const { return tie() < other.tie(); }
};

// "batch 2, 4x64x64 latents, Half" (for the log line).
std::string describe(const UNetGraphKey& key);

// A captured evaluation: replay() recomputes `output` from what `inputs` hold at that time.
struct CapturedUNet {
  std::vector<at::Tensor> inputs;  // static buffers, same shapes as the capture's inputs
  at::Tensor output;               // static, overwritten by each replay
  std::function<void()> replay;    // holds the graph
};

// The UNet evaluation to capture or run eagerly: inputs (sample, timestep, context) -> output.
using UNetForward = std::function<at::Tensor(const std::vector<at::Tensor>& inputs)>;
// Captures `forward` on inputs like these; throws (any std::exception) where it cannot.
using UNetCapture =
    std::function<std::unique_ptr<CapturedUNet>(const UNetForward& forward, const std::vector<at::Tensor>& inputs)>;

struct UNetRun {
  at::Tensor output;
  bool replayed = false;  // by a graph (else eagerly)
};

class UNetGraphCache {
 public:
  // At most max_graphs graphs are kept (each holds a memory pool the size of the UNet's
  // activations); beyond that the least recently used one goes.
  explicit UNetGraphCache(UNetCapture capture, size_t max_graphs = 4);

  // forward(inputs), by the key's graph: captured at the key's first use, then replayed with the
  // inputs copied into its static buffers. The output is a copy (the static one is overwritten by
  // the next replay; schedulers keep past outputs). Where the key's capture failed: eagerly.
  UNetRun run(const UNetGraphKey& key, const std::vector<at::Tensor>& inputs, const UNetForward& forward);

  void clear();
  size_t size() const { return graphs_.size(); }
  bool failed(const UNetGraphKey& key) const { return failed_.count(key) != 0; }

 private:
  UNetCapture capture_;
  size_t max_graphs_;
  std::list<std::pair<UNetGraphKey, std::unique_ptr<CapturedUNet>>> graphs_;  // most recently used first
  std::set<UNetGraphKey> failed_;
};

}  // namespace sd
