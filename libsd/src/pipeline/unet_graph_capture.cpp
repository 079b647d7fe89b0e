// The CPU build's capture step: CUDA graphs need a LibTorch with CUDA (unet_graph_capture_cuda.cpp).
#include "pipeline/unet_graph_capture.h"

#include "sd/error.h"

#ifndef LIBSD_WITH_CUDA
namespace sd {

std::unique_ptr<CapturedUNet> capture_unet_graph(const UNetForward&, const std::vector<at::Tensor>&) {
  SD_FAIL("CUDA graphs need a LibTorch with CUDA");
}

}  // namespace sd
#endif
