#include "core/host_to_device.h"

namespace sd {

at::Tensor host_to_device(const at::Tensor& tensor, const c10::Device& device, std::optional<c10::ScalarType> dtype) {
  const c10::ScalarType to_dtype = dtype.value_or(tensor.scalar_type());
  if (device.is_cuda() && tensor.is_cpu()) {
    // Convert on the host first: the pinned copy is then the only transfer.
    const at::Tensor source = tensor.scalar_type() == to_dtype ? tensor : tensor.to(to_dtype);
    return source.pin_memory().to(device, to_dtype, /*non_blocking=*/true);
  }
  return tensor.to(device, to_dtype);
}

}  // namespace sd
