#pragma once
// What libsd was built with and what it finds at run time: the LibTorch version, whether that
// LibTorch has CUDA, the CUDA and cuDNN versions it was built with, and the visible GPUs. For
// `sd --version`, benchmark rows and bug reports: a number is only reproducible with these beside it.
#include <string>

#include "sd/export.h"

namespace sd {

struct BuildInfo {
  std::string libsd_version;      // "0.1.0"
  std::string libtorch_version;   // the LibTorch headers libsd was compiled against, "2.11.0"
  bool cuda_compiled = false;     // libsd's CUDA sources are compiled in (the LibTorch has CUDA)
  std::string cuda_version;       // CUDA runtime LibTorch uses, "13.0"; empty without CUDA
  std::string cudnn_version;      // cuDNN LibTorch was built with, "9.19.0"; empty if none
  int cuda_devices = 0;           // GPUs visible now (0 without CUDA or without a driver)
};

// Computed once; cheap to call again.
SD_API const BuildInfo& build_info();

// One line: "libsd 0.1.0, LibTorch 2.11.0, CUDA 13.0, cuDNN 9.19.0, 0 CUDA devices" or
// "libsd 0.1.0, LibTorch 1.13.0, no CUDA".
SD_API std::string build_info_line();

}  // namespace sd
