#pragma once
// Before a generation allocates anything: how much memory its largest stage needs (the UNet's
// activations at the requested size and batch, the VAE's decode, the init image's encode), so a
// request that cannot fit is refused in one line that says what it needs, what the limit is and
// which options lower it, instead of failing in the allocator minutes later (or being killed).
// The models are rough by design: feature maps alive at once, times the element size; not
// counted: weights (already loaded), allocator caching, convolution workspaces. They err low
// (vae_tiling.h measures the decode's at ~25 % under), so a refusal means it would not fit.
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <exception>
#include <string>

#include "models/configs.h"

namespace sd {

struct ActivationMemoryOptions {
  bool attention_scores = false;  // the attention's [heads, HW, HW] score matrix is materialized
  int64_t query_slice = 0;        // > 0: the scores of this many query rows at a time
  // The process's memory over the tensors the model counts: the CPU's heap keeps fragments between
  // allocations and oneDNN has buffers of its own. Calibrated on the CPU (kCpuUNetOverhead).
  double overhead = 1.0;
};

// Measured peak RSS of one warm UNet evaluation over the live tensors this file models was 1.3-1.7
// for SD 1.5 at 512x512 and 768x768, fp32 and bf16, LibTorch 1.13 (docs/reliability.md, "The memory
// estimate, measured"): the estimate takes the low end, so that it still errs low.
constexpr double kCpuUNetOverhead = 1.25;

// The UNet's peak activations for one evaluation on `unet_batch` latents of h x w (the guidance
// doubles the batch): the skip connections the down path keeps for the up path, plus the widest
// working set of one level (a resnet on the concatenated skip, or a transformer block's
// feed-forward, or its attention with the scores where held).
int64_t estimate_unet_peak_bytes(const UNetConfig& config, int64_t unet_batch, int64_t h, int64_t w,
                                 c10::ScalarType dtype, const ActivationMemoryOptions& options);

// Memory a process can still get: MemAvailable of /proc/meminfo (0 if unknown).
int64_t available_memory_bytes();

// LibTorch's out-of-memory errors: c10::OutOfMemoryError, a c10::Error whose message says so (CPU
// allocator: "can't allocate memory" in 1.13, "not enough memory" in 2.x; CUDA: "out of memory"),
// or std::bad_alloc; or an sd::OutOfMemoryError that an inner stage already made of one.
bool is_out_of_memory(const std::exception& error);
// The first line of an exception message (c10::Error appends a C++ backtrace).
std::string first_line(const std::string& message);

// "3.2 GiB", "512 MiB": for the one-line refusals.
std::string format_memory(double bytes);

}  // namespace sd
