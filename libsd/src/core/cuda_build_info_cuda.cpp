// CUDA and cuDNN versions through LibTorch's CUDA hooks: they answer on a machine without a GPU
// or driver too, which is where the CI build runs.
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/cuda.h>

#include <exception>
#include <string>

#include "core/cuda_build_info.h"

namespace sd::detail {
namespace {

// CUDA encodes versions as major*1000 + minor*10 (13000 -> "13.0").
std::string cuda_version_string(long version) {
  return std::to_string(version / 1000) + "." + std::to_string((version % 1000) / 10);
}

// cuDNN 9 encodes major*10000 + minor*100 + patch (91900 -> "9.19.0"); cuDNN 8 used major*1000.
std::string cudnn_version_string(long version) {
  if (version >= 90000) {
    return std::to_string(version / 10000) + "." + std::to_string((version % 10000) / 100) + "." +
           std::to_string(version % 100);
  }
  return std::to_string(version / 1000) + "." + std::to_string((version % 1000) / 100) + "." +
         std::to_string(version % 100);
}

}  // namespace

void fill_cuda_build_info(BuildInfo& info) {
  const auto& hooks = at::detail::getCUDAHooks();
  try {
    info.cuda_version = cuda_version_string(hooks.versionCUDART());
  } catch (const std::exception&) {
    info.cuda_version.clear();
  }
  try {
    if (hooks.hasCuDNN()) info.cudnn_version = cudnn_version_string(hooks.versionCuDNN());
  } catch (const std::exception&) {
    info.cudnn_version.clear();
  }
  try {
    info.cuda_devices = static_cast<int>(torch::cuda::device_count());
  } catch (const std::exception&) {
    info.cuda_devices = 0;
  }
}

}  // namespace sd::detail
