// The CPU build's release_cached_memory: nothing to give back. The CUDA build's is in
// device_memory_cuda.cpp.
#include "core/device_memory.h"

#ifndef LIBSD_WITH_CUDA
namespace sd {

void release_cached_memory(const c10::Device&) {}

}  // namespace sd
#endif
