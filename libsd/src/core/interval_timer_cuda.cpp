// Intervals timed by CUDA events: begin() and end() only enqueue a timestamp on the current stream,
// so the loop they time keeps the GPU fed; seconds() waits once for the last one.
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <utility>

#include "core/interval_timer.h"

namespace sd::detail {

namespace {

// LibTorch 2.9 moved CUDAEvent into c10 (ATen's header now only includes it).
#if __has_include(<c10/cuda/CUDAEvent.h>)
using CudaEvent = c10::cuda::CUDAEvent;
#else
using CudaEvent = at::cuda::CUDAEvent;
#endif

class CudaEventTimer : public IntervalTimer {
 public:
  explicit CudaEventTimer(const c10::Device& device) : device_(device) {}
  void begin() override {
    start_ = std::make_unique<CudaEvent>(cudaEventDefault);  // cudaEventDefault: with timing
    start_->record(c10::cuda::getCurrentCUDAStream(device_.index()));
  }
  void end() override {
    auto stop = std::make_unique<CudaEvent>(cudaEventDefault);
    stop->record(c10::cuda::getCurrentCUDAStream(device_.index()));
    intervals_.emplace_back(std::move(start_), std::move(stop));
  }
  std::vector<double> seconds() override {
    std::vector<double> out;
    for (const auto& [start, stop] : intervals_) {
      stop->synchronize();
      out.push_back(static_cast<double>(start->elapsed_time(*stop)) / 1000.0);  // milliseconds
    }
    return out;
  }

 private:
  c10::Device device_;
  std::unique_ptr<CudaEvent> start_;
  std::vector<std::pair<std::unique_ptr<CudaEvent>, std::unique_ptr<CudaEvent>>> intervals_;
};

}  // namespace

std::unique_ptr<IntervalTimer> make_cuda_event_timer(const c10::Device& device) {
  return std::make_unique<CudaEventTimer>(device);
}

}  // namespace sd::detail
