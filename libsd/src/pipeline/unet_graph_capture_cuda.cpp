// One UNet evaluation as a CUDA graph (at::cuda::CUDAGraph), the way torch.cuda.graph does it:
// warm-up on a side stream (lazy initialisation, cuBLAS/cuDNN workspaces and algorithm choice
// happen outside the capture), then the capture on that stream, with autocast's weight cache off
// (its casts would be freed when the autocast scope ends, under the graph's feet).
#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include "pipeline/unet_graph_capture.h"
#include "sd/error.h"

namespace sd {

namespace {

// Evaluations before the capture: the first initialises, the second runs as the graph will.
constexpr int kWarmupEvaluations = 2;

// LibTorch 2.9 moved CUDAEvent into c10 (ATen's header now only includes it).
#if __has_include(<c10/cuda/CUDAEvent.h>)
using CudaEvent = c10::cuda::CUDAEvent;
#else
using CudaEvent = at::cuda::CUDAEvent;
#endif

class AutocastCacheOff {
 public:
  AutocastCacheOff() : saved_(at::autocast::is_autocast_cache_enabled()) {
    at::autocast::set_autocast_cache_enabled(false);
  }
  ~AutocastCacheOff() { at::autocast::set_autocast_cache_enabled(saved_); }
  AutocastCacheOff(const AutocastCacheOff&) = delete;
  AutocastCacheOff& operator=(const AutocastCacheOff&) = delete;

 private:
  bool saved_;
};

// `waiter` starts its next work after what `signaller` has queued so far.
void wait_for(const c10::cuda::CUDAStream& waiter, const c10::cuda::CUDAStream& signaller) {
  CudaEvent event;
  event.record(signaller);
  event.block(waiter);
}

}  // namespace

std::unique_ptr<CapturedUNet> capture_unet_graph(const UNetForward& forward, const std::vector<at::Tensor>& inputs) {
  SD_CHECK(!inputs.empty() && inputs[0].is_cuda(), "CUDA graphs need the UNet's inputs on a CUDA device");
  const c10::Device device = inputs[0].device();
  c10::cuda::CUDAGuard device_guard(device);
  auto captured = std::make_unique<CapturedUNet>();
  for (const at::Tensor& x : inputs) captured->inputs.push_back(x.clone());  // same shape, dtype, layout
  auto graph = std::make_shared<at::cuda::CUDAGraph>();
  const c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream(device.index());
  const c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, device.index());
  AutocastCacheOff autocast_cache;
  wait_for(side, current);  // the static inputs are written on the current stream
  {
    c10::cuda::CUDAStreamGuard on_side(side);
    for (int i = 0; i < kWarmupEvaluations; ++i) forward(captured->inputs);
    graph->capture_begin();
    try {
      captured->output = forward(captured->inputs);
      graph->capture_end();
    } catch (...) {
      // End the capture whatever happened, so the stream is usable again; the first error is the one to report.
      try {
        graph->capture_end();
      } catch (...) {
      }
      (void)cudaGetLastError();
      throw;
    }
  }
  wait_for(current, side);
  captured->replay = [graph] { graph->replay(); };
  return captured;
}

}  // namespace sd
