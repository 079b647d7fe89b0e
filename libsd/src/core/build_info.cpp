#include "sd/build_info.h"

#include <torch/version.h>

#include "core/cuda_build_info.h"

#ifndef LIBSD_VERSION
#define LIBSD_VERSION "unknown"
#endif

namespace sd {

const BuildInfo& build_info() {
  static const BuildInfo info = [] {
    BuildInfo out;
    out.libsd_version = LIBSD_VERSION;
    out.libtorch_version = TORCH_VERSION;
#ifdef LIBSD_WITH_CUDA
    out.cuda_compiled = true;
    detail::fill_cuda_build_info(out);
#endif
    return out;
  }();
  return info;
}

std::string build_info_line() {
  const auto& info = build_info();
  std::string line = "libsd " + info.libsd_version + ", LibTorch " + info.libtorch_version;
  if (!info.cuda_compiled) return line + ", no CUDA";
  line += ", CUDA " + (info.cuda_version.empty() ? std::string("(version unknown)") : info.cuda_version);
  line += info.cudnn_version.empty() ? ", no cuDNN" : ", cuDNN " + info.cudnn_version;
  line += ", " + std::to_string(info.cuda_devices) + (info.cuda_devices == 1 ? " CUDA device" : " CUDA devices");
  return line;
}

}  // namespace sd
