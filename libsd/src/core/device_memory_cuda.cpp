// CUDA: after an out-of-memory, the blocks the failed call cached are free but still reserved by
// LibTorch's caching allocator; emptying it returns them to the device (and to other processes).
#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/cuda.h>

#include "core/device_memory.h"

namespace sd {

void release_cached_memory(const c10::Device& device) {
  if (!device.is_cuda() || !torch::cuda::is_available()) return;
  c10::cuda::CUDACachingAllocator::emptyCache();
}

}  // namespace sd
