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
// begin_timed_runs() opens a second part within it, after the warm-up: the window's peaks still
// cover both parts, and the timed runs' own peak and starting point are kept apart, because a first
// run allocates for good what later runs reuse (prepacked convolution weights: ~2.2 GB for SD 1.5
// in fp32 on the CPU), which is not the run's working memory. On the CPU the heap's free pages are
// handed back first (they would hide the timed runs' allocations from the RSS), so the timed runs'
// first touches of their working memory are page faults inside the timing.
class MemoryWindow {
 public:
  explicit MemoryWindow(const std::string& device);
  explicit MemoryWindow(const sd::Pipeline& pipe);  // on the pipeline's device

  // The timed runs begin: the peaks so far are kept, the peaks are reset (the CUDA cache is kept,
  // so the timed runs do not allocate afresh) and what is held now is the timed runs' base.
  void begin_timed_runs();

  struct Reading {
    std::optional<int64_t> peak_rss;         // since the window began, or of the whole process
    std::optional<int64_t> start_rss;        // RSS when the window began (the weights, what malloc kept)
    bool rss_window = false;                 // false: the kernel refused the reset (whole process)
    std::optional<CudaMemory> device;        // nullopt on the CPU
    // After begin_timed_runs: the timed runs' own peak above what was held when they began (CUDA:
    // allocated bytes; CPU: RSS, where the kernel reset its peak). nullopt otherwise.
    std::optional<int64_t> timed_increase;
    // Peak device reserved on CUDA, peak RSS on the CPU: "the memory this took".
    std::optional<int64_t> peak() const;
  };
  Reading read() const;

 private:
  std::string device_;
  bool rss_window_ = false;
  std::optional<int64_t> start_rss_;
  std::optional<Reading> before_timed_;  // the warm-up's reading, at begin_timed_runs
  bool timed_rss_window_ = false;
  std::optional<int64_t> timed_start_rss_, timed_start_device_allocated_;
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
// With a window, its timed part begins after the warm-up (MemoryWindow::begin_timed_runs).
// Progress lines are prefixed with `label`. Exceptions (out of memory included) propagate.
Measurement measure_runs(sd::Pipeline& pipe, const std::string& prompt, const sd::GenerateOptions& options, int warmup,
                         int repeats, const Progress& progress, const std::string& label,
                         MemoryWindow* window = nullptr);
// The decode stage alone: `warmup` untimed, then `repeats` timed Pipeline::decode calls of
// `latents`, in a new memory window (m.decode and m.memory filled, the rest left empty).
Measurement measure_decodes(sd::Pipeline& pipe, const at::Tensor& latents, int warmup, int repeats,
                            const Progress& progress, const std::string& label);
// measure_runs in a new memory window, with its reading.
Measurement measure_configuration(sd::Pipeline& pipe, const std::string& prompt, const sd::GenerateOptions& options,
                                  int warmup, int repeats, const Progress& progress, const std::string& label);

}  // namespace sd_bench
