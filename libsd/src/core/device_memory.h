#pragma once
// What the device's caching allocator holds but no tensor uses, given back (CUDA:
// CUDACachingAllocator::emptyCache). Implemented in device_memory_cuda.cpp where LibTorch has
// CUDA, and as a no-op in device_memory.cpp otherwise (the CPU allocator caches nothing).
#include <c10/core/Device.h>

namespace sd {

void release_cached_memory(const c10::Device& device);

}  // namespace sd
