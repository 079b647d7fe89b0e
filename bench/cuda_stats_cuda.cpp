// CUDA statistics from LibTorch's caching allocator. Compiled only where LibTorch has CUDA
// (LIBSD_WITH_CUDA); untested on the CPU-only reference machine (docs/benchmarks.md says so).
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include "cuda_stats.h"

namespace sd_bench {

namespace {
// StatType::AGGREGATE is entry 0 of every StatArray in LibTorch 1.13 and 2.x alike; the enum
// itself moved namespaces in 2.x (c10::CachingDeviceAllocator), the index did not.
constexpr size_t kAggregate = 0;
}  // namespace

bool cuda_stats_compiled() { return true; }

std::string cuda_device_name(int index) { return at::cuda::getDeviceProperties(index)->name; }

void cuda_synchronize(int index) { torch::cuda::synchronize(index); }

void cuda_reset_peak_memory(int index) {
  cuda_synchronize(index);
  c10::cuda::CUDACachingAllocator::resetPeakStats(index);
}

void cuda_empty_cache() { c10::cuda::CUDACachingAllocator::emptyCache(); }

std::optional<CudaMemory> cuda_memory(int index) {
  cuda_synchronize(index);
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
  CudaMemory memory;
  memory.peak_allocated = stats.allocated_bytes[kAggregate].peak;
  memory.peak_reserved = stats.reserved_bytes[kAggregate].peak;
  memory.reserved = stats.reserved_bytes[kAggregate].current;
  memory.allocated = stats.allocated_bytes[kAggregate].current;
  return memory;
}

}  // namespace sd_bench
