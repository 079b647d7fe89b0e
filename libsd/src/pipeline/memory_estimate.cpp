#include "pipeline/memory_estimate.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <new>

#include <c10/util/Exception.h>

#include "sd/error.h"

namespace sd {

// Per batch item, in elements (C channels at A pixels count C * A):
//   skips: conv_in's output, each down resnet's output and each downsampler's output;
//   resnet Cin -> Cout: input, norm, conv1, conv2 (2 Cin + 2 Cout), with Cin = 2 Cout on the up
//   path (the skip concatenated);
//   transformer block: at the GEGLU feed-forward, its 8 C projection, the GELU of one half and the
//   product (4 C each), the norm it read, the block's input and the transformer's residual (~20 C),
//   or the attention's input, norm, q, k, v, output (6 C) plus the scores: heads x rows x HW in fp32
//   twice (scores, softmax) and once in the compute dtype;
//   all of it times options.overhead.
int64_t estimate_unet_peak_bytes(const UNetConfig& config, int64_t unet_batch, int64_t h, int64_t w,
                                 c10::ScalarType dtype, const ActivationMemoryOptions& options) {
  const auto& ch = config.block_out_channels;
  const size_t n = ch.size();
  if (n == 0) return 0;
  const double elem = static_cast<double>(c10::elementSize(dtype));
  double area = static_cast<double>(h) * static_cast<double>(w);
  double skips = static_cast<double>(ch[0]) * area;
  double working = 0;
  const double per_block = static_cast<double>(config.layers_per_block);
  for (size_t i = 0; i < n; ++i) {
    const double c = static_cast<double>(ch[i]);
    skips += per_block * c * area;
    working = std::max(working, 6 * c * area);  // the up path's resnet: 2 * 2C + 2C
    if (config.down_has_attention(i) || config.up_has_attention(n - 1 - i)) {
      double scores = 0;
      if (options.attention_scores) {
        const double rows = options.query_slice > 0 ? std::min(static_cast<double>(options.query_slice), area) : area;
        scores = static_cast<double>(config.num_heads[i]) * rows * area * (8 + elem) / elem;
      }
      working = std::max({working, 20 * c * area, 6 * c * area + scores});
    }
    if (i + 1 < n) {
      area = static_cast<double>((h + 1) / 2) * static_cast<double>((w + 1) / 2);
      h = (h + 1) / 2;
      w = (w + 1) / 2;
      skips += c * area;
    }
  }
  const double bytes = (skips + working) * elem * static_cast<double>(unet_batch) * options.overhead;
  return bytes >= 9.0e18 ? INT64_MAX : static_cast<int64_t>(bytes);
}

int64_t available_memory_bytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key, unit;
  int64_t kib = 0;
  while (meminfo >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024;
  }
  return 0;
}

bool is_out_of_memory(const std::exception& error) {
  if (dynamic_cast<const std::bad_alloc*>(&error) != nullptr) return true;
  if (dynamic_cast<const OutOfMemoryError*>(&error) != nullptr) return true;  // a stage's, already worded
  if (dynamic_cast<const c10::Error*>(&error) == nullptr) return false;  // sd::Error and others keep their meaning
  if (dynamic_cast<const c10::OutOfMemoryError*>(&error) != nullptr) return true;
  const std::string message = first_line(error.what());
  for (const char* needle : {"out of memory", "can't allocate memory", "not enough memory", "Cannot allocate memory"}) {
    if (message.find(needle) != std::string::npos) return true;
  }
  return false;
}

std::string first_line(const std::string& message) { return message.substr(0, message.find('\n')); }

std::string format_memory(double bytes) {
  char text[64];
  const double gib = bytes / (1024.0 * 1024.0 * 1024.0);
  if (gib >= 1024.0 * 1024.0) {
    std::snprintf(text, sizeof(text), "%.3g PiB", gib / (1024.0 * 1024.0));
  } else if (gib >= 1024.0) {
    std::snprintf(text, sizeof(text), "%.1f TiB", gib / 1024.0);
  } else if (gib >= 1.0) {
    std::snprintf(text, sizeof(text), "%.1f GiB", gib);
  } else {
    std::snprintf(text, sizeof(text), "%.0f MiB", bytes / (1024.0 * 1024.0));
  }
  return text;
}

}  // namespace sd
