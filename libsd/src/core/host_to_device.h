#pragma once
// What crosses from the host to the device at every step (the scheduler's CPU-drawn noise, the
// timestep): on CUDA through pinned (page-locked) memory with a non-blocking copy, so the host
// does not wait for the GPU to drain its queue before each copy; elsewhere a plain .to().
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <optional>

namespace sd {

// `tensor` on `device`, as `dtype` when given. Safe to let the source go out of scope at once:
// LibTorch's pinned-memory allocator keeps a block until the copy that reads it has run.
at::Tensor host_to_device(const at::Tensor& tensor, const c10::Device& device,
                          std::optional<c10::ScalarType> dtype = std::nullopt);

}  // namespace sd
