#include "pipeline/unet_graph_cache.h"

#include <algorithm>
#include <exception>
#include <sstream>

#include "core/log_macros.h"
#include "pipeline/memory_estimate.h"
#include "sd/error.h"

namespace sd {

std::string describe(const UNetGraphKey& key) {
  std::ostringstream out;
  out << "batch " << key.batch << ", " << key.channels << "x" << key.height << "x" << key.width << " latents, "
      << key.dtype << (key.autocast ? " autocast" : "");
  return out.str();
}

UNetGraphCache::UNetGraphCache(UNetCapture capture, size_t max_graphs)
    : capture_(std::move(capture)), max_graphs_(std::max<size_t>(max_graphs, 1)) {}

UNetRun UNetGraphCache::run(const UNetGraphKey& key, const std::vector<at::Tensor>& inputs,
                            const UNetForward& forward) {
  if (failed(key)) return {forward(inputs), false};
  auto it = std::find_if(graphs_.begin(), graphs_.end(), [&](const auto& entry) { return entry.first == key; });
  if (it != graphs_.end()) {
    graphs_.splice(graphs_.begin(), graphs_, it);  // most recently used first
  } else {
    std::unique_ptr<CapturedUNet> captured;
    try {
      captured = capture_(forward, inputs);
      SD_CHECK(captured && captured->replay && captured->inputs.size() == inputs.size() && captured->output.defined(),
               "the capture returned no graph");
    } catch (const std::exception& e) {
      failed_.insert(key);
      SD_LOG_INFO("CUDA graph capture failed for ", describe(key), " (", first_line(e.what()),
                  "): the UNet runs eagerly for this shape");
      return {forward(inputs), false};
    }
    if (graphs_.size() >= max_graphs_) graphs_.pop_back();
    graphs_.emplace_front(key, std::move(captured));
  }
  CapturedUNet& graph = *graphs_.front().second;
  for (size_t i = 0; i < inputs.size(); ++i) graph.inputs[i].copy_(inputs[i]);
  graph.replay();
  return {graph.output.clone(), true};
}

void UNetGraphCache::clear() {
  graphs_.clear();
  failed_.clear();
}

}  // namespace sd
