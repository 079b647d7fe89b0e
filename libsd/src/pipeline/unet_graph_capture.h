#pragma once
// The capture step of UNetGraphCache: on CUDA (unet_graph_capture_cuda.cpp) a CUDA graph of one
// UNet evaluation; in a LibTorch without CUDA (unet_graph_capture.cpp) it always fails, so the
// cache runs the UNet eagerly.
#include <memory>
#include <vector>

#include "pipeline/unet_graph_cache.h"

namespace sd {

// Warm-up evaluations, then the capture of forward(static copies of inputs), on a side stream;
// the inputs are on one CUDA device. Throws where the evaluation cannot be captured.
std::unique_ptr<CapturedUNet> capture_unet_graph(const UNetForward& forward, const std::vector<at::Tensor>& inputs);

}  // namespace sd
