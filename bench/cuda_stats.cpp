// CPU-only LibTorch: no CUDA device can be in use (Pipeline::load refuses "cuda" first), so the
// statistics are absent and synchronization has nothing to wait for.
#include "cuda_stats.h"

namespace sd_bench {

bool cuda_stats_compiled() { return false; }
std::string cuda_device_name(int index) {
  return "cuda:" + std::to_string(index) + " (this LibTorch has no CUDA)";
}
void cuda_synchronize(int) {}
void cuda_reset_peak_memory(int) {}
void cuda_empty_cache() {}
std::optional<CudaMemory> cuda_memory(int) { return std::nullopt; }

}  // namespace sd_bench
