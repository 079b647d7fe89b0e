#pragma once
// The CUDA half of sd::build_info(), implemented in cuda_build_info_cuda.cpp: compiled only where
// LibTorch has CUDA (LIBSD_WITH_CUDA).
#include "sd/build_info.h"

namespace sd::detail {

void fill_cuda_build_info(BuildInfo& info);

}  // namespace sd::detail
