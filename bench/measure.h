#pragma once
// Measuring one configuration: a fresh memory window, untimed warm-up generations, timed repeats,
// and the stage timings and memory peaks they gave. Both latency and throughput tools measure
// through this, so they time and account memory the same way.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cuda_stats.h"
#include "sd/pipeline.h"
#include "tool.h"

namespace sd_bench {

// A peak window: on construction the CUDA caching allocator is emptied and its peaks reset (on a
// CUDA device), and the process's peak RSS is reset (where the kernel allows it).
class MemoryWindow {
 public:
  explicit MemoryWindow(const std::string& device);
  explicit MemoryWindow(const sd::Pipeline& pipe);  // on the pipeline's device

  struct Reading {
    std::optional<int64_t> peak_rss;         // since the window began, or of the whole process
    std::optional<int64_t> start_rss;        // RSS when the window began (the weights, what malloc kept)
    bool rss_window = false;                 // false: the kernel refused the reset (whole process)
    std::optional<CudaMemory> device;        // nullopt on the CPU
    // Peak device reserved on CUDA, peak RSS on the CPU: "the memory this took".
    std::optional<int64_t> peak() const;
  };
  Reading read() const;

 private:
  std::string device_;
  bool rss_window_ = false;
  std::optional<int64_t> start_rss_;
};

struct Measurement {
  // Per timed run (seconds).
  std::vector<double> latency, text_encoder, encode, decode, scheduler, denoise;
  std::vector<double> unet;  // every UNet evaluation of every timed run
  int unet_evals = 0;        // per run
  bool cuda_graph = false;   // the timed runs replayed captured CUDA graphs
  MemoryWindow::Reading memory;
};

// `warmup` untimed, then `repeats` timed generations of `options`; the memory reading is left empty.
// Progress lines are prefixed with `label`. Exceptions (out of memory included) propagate.
Measurement measure_runs(sd::Pipeline& pipe, const std::string& prompt, const sd::GenerateOptions& options, int warmup,
                         int repeats, const Progress& progress, const std::string& label);
// The decode stage alone: `warmup` untimed, then `repeats` timed Pipeline::decode calls of
// `latents`, in a new memory window (m.decode and m.memory filled, the rest left empty).
Measurement measure_decodes(sd::Pipeline& pipe, const at::Tensor& latents, int warmup, int repeats,
                            const Progress& progress, const std::string& label);
// measure_runs in a new memory window, with its reading.
Measurement measure_configuration(sd::Pipeline& pipe, const std::string& prompt, const sd::GenerateOptions& options,
                                  int warmup, int repeats, const Progress& progress, const std::string& label);

}  // namespace sd_bench
