#include "measure.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>

#include "options.h"
#include "environment.h"
#include "stats.h"
#include "table.h"

namespace sd_bench {

MemoryWindow::MemoryWindow(const std::string& device) : device_(device) {
  if (is_cuda_device(device)) {
    cuda_empty_cache();
    cuda_reset_peak_memory(cuda_index(device));
  }
  rss_window_ = reset_peak_rss();
  start_rss_ = current_rss_bytes();
}

void MemoryWindow::begin_timed_runs() {
  before_timed_ = read();
  if (is_cuda_device(device_)) cuda_reset_peak_memory(cuda_index(device_));
  release_free_heap_pages();  // else the timed runs reuse the warm-up's freed pages unseen
  timed_rss_window_ = reset_peak_rss();
  timed_start_rss_ = current_rss_bytes();
  if (const auto memory = device_memory(device_)) timed_start_device_allocated_ = memory->allocated;
}

MemoryWindow::MemoryWindow(const sd::Pipeline& pipe)
    : MemoryWindow(pipe.device().is_cuda() ? pipe.device().str() : std::string("cpu")) {}

std::optional<int64_t> MemoryWindow::Reading::peak() const {
  if (device) return device->peak_reserved;
  return peak_rss;
}

MemoryWindow::Reading MemoryWindow::read() const {
  Reading reading;
  reading.peak_rss = peak_rss_bytes();
  reading.rss_window = rss_window_;
  reading.start_rss = start_rss_;
  reading.device = device_memory(device_);
  if (!before_timed_) return reading;
  // The timed runs' own increase, then the whole window's peaks: the larger of the two parts'.
  if (reading.device && timed_start_device_allocated_) {
    reading.timed_increase = reading.device->peak_allocated - *timed_start_device_allocated_;
  } else if (!reading.device && timed_rss_window_ && reading.peak_rss && timed_start_rss_) {
    reading.timed_increase = *reading.peak_rss - *timed_start_rss_;
  }
  const Reading& before = *before_timed_;
  if (before.peak_rss && (!reading.peak_rss || *before.peak_rss > *reading.peak_rss)) reading.peak_rss = before.peak_rss;
  if (before.device && reading.device) {
    reading.device->peak_allocated = std::max(reading.device->peak_allocated, before.device->peak_allocated);
    reading.device->peak_reserved = std::max(reading.device->peak_reserved, before.device->peak_reserved);
  }
  return reading;
}

Measurement measure_runs(sd::Pipeline& pipe, const std::string& prompt, const sd::GenerateOptions& options, int warmup,
                         int repeats, const Progress& progress, const std::string& label, MemoryWindow* window) {
  for (int w = 0; w < warmup; ++w) {
    progress(label + ": warmup " + std::to_string(w + 1) + "/" + std::to_string(warmup));
    pipe.generate(prompt, options);
  }
  if (window) window->begin_timed_runs();
  Measurement m;
  m.cuda_graph = repeats > 0;
  for (int r = 0; r < repeats; ++r) {
    const auto result = pipe.generate(prompt, options);
    const auto& t = result.timings;
    m.latency.push_back(t.total_s);
    m.unet.insert(m.unet.end(), t.unet_s.begin(), t.unet_s.end());
    m.text_encoder.push_back(t.text_encoder_s);
    m.encode.push_back(t.encode_s);
    m.decode.push_back(t.decode_s);
    m.scheduler.push_back(sum(t.scheduler_s));
    m.denoise.push_back(t.denoise_s);
    m.unet_evals = static_cast<int>(t.unet_s.size());
    m.cuda_graph = m.cuda_graph && result.cuda_graph;
    progress(label + ": run " + std::to_string(r + 1) + "/" + std::to_string(repeats) + " " + fixed(t.total_s, 3) + " s");
  }
  return m;
}

Measurement measure_decodes(sd::Pipeline& pipe, const at::Tensor& latents, int warmup, int repeats,
                            const Progress& progress, const std::string& label) {
  MemoryWindow window(pipe);
  for (int w = 0; w < warmup; ++w) {
    progress(label + ": warmup " + std::to_string(w + 1) + "/" + std::to_string(warmup));
    pipe.decode(latents);
  }
  window.begin_timed_runs();
  Measurement m;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    const auto images = pipe.decode(latents);
    // On CUDA decode() can return before the device is done: reading a value back waits for it.
    (void)images.sum().item<double>();
    m.decode.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    progress(label + ": decode " + std::to_string(r + 1) + "/" + std::to_string(repeats) + " " +
             fixed(m.decode.back(), 3) + " s");
  }
  m.memory = window.read();
  return m;
}

Measurement measure_configuration(sd::Pipeline& pipe, const std::string& prompt, const sd::GenerateOptions& options,
                                  int warmup, int repeats, const Progress& progress, const std::string& label) {
  MemoryWindow window(pipe);
  Measurement m = measure_runs(pipe, prompt, options, warmup, repeats, progress, label, &window);
  m.memory = window.read();
  return m;
}

}  // namespace sd_bench
