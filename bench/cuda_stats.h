#pragma once
// CUDA-only measurements: device name, synchronization, caching-allocator statistics.
// cuda_stats_cuda.cpp implements them where LibTorch has CUDA (CMake's LIBSD_WITH_CUDA);
// cuda_stats.cpp is the CPU-only build's fallback, where no CUDA device can be in use.
#include <cstdint>
#include <optional>
#include <string>

namespace sd_bench {

// True where the CUDA implementation is compiled in.
bool cuda_stats_compiled();
// "NVIDIA A100 80GB PCIe"; the fallback says CUDA is not compiled in.
std::string cuda_device_name(int index);
void cuda_synchronize(int index);
// Starts a new peak window for cuda_memory()'s peaks.
void cuda_reset_peak_memory(int index);
// Returns cached blocks to the driver (between throughput tries, after an out-of-memory error).
void cuda_empty_cache();

struct CudaMemory {
  int64_t peak_allocated = 0;  // bytes held by tensors, peak since the last reset
  int64_t peak_reserved = 0;   // bytes the caching allocator held, peak since the last reset
  int64_t reserved = 0;        // bytes reserved now (what the seed study reported, after the run)
  int64_t allocated = 0;       // bytes held by tensors now (before the timed runs: the weights, caches)
};
// nullopt in the fallback.
std::optional<CudaMemory> cuda_memory(int index);
// The allocator statistics of a --device: nullopt for the CPU (a CUDA LibTorch measuring the CPU
// may have no GPU to ask at all). Implemented in environment.cpp.
std::optional<CudaMemory> device_memory(const std::string& device);

}  // namespace sd_bench
