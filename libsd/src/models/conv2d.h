#pragma once
// Conv2d that can hand oneDNN its weight already reordered.
//
// LibTorch's CPU convolution reorders the weight into oneDNN's blocked layout on every call. For
// small inputs that reorder costs as much as the arithmetic: a 3x3 1280->1280 convolution on the
// UNet's 8x8 level runs at ~80 GFLOP/s in fp32 instead of ~210 (docs/performance.md). LibTorch's
// oneDNN build also registers "mkldnn_prepacked::conv2d_prepack / conv2d_run", which keep the
// reordered weight in an op context; this module uses them, found at run time through the
// dispatcher, for channels-last CPU inputs small enough for the reorder to matter. The packed
// copy is extra memory (the context also keeps the plain weight), so only those convolutions are
// packed, at their first such call. Results are the same oneDNN kernel's, bit for bit.
#include <torch/torch.h>

namespace sd {

struct Conv2dImpl : torch::nn::Conv2dImpl {
  using torch::nn::Conv2dImpl::Conv2dImpl;
  torch::Tensor forward(const torch::Tensor& x);

  // forward() packs the weight for inputs with batch * height * width up to this many pixels
  // (0: never; set by enable_conv_prepacking).
  int64_t prepack_max_pixels = 0;
  bool packed() const { return !packed_context_.isNone(); }
  // Forgets the packed copy: after the weight changed in place (LoRA), the next call packs it anew.
  void drop_packed_weight() {
    packed_context_ = c10::IValue();
    packing_failed_ = false;
  }

 private:
  bool worth_packing(const torch::Tensor& x) const;
  c10::IValue packed_context_;  // the oneDNN op context, None until packed
  bool packing_failed_ = false;
};
TORCH_MODULE(Conv2d);

// The library's default for LoadOptions::prepack_max_pixels = -1: where packing pays for its
// memory. (Packing all 45 such weights of the SD 1.5 UNet takes ~1.1 s in fp32, once: dropping the
// copies between generations to save memory would cost that again at every generation.) Measured on 2 Zen 4 cores (docs/performance.md), packed vs plain GFLOP/s, 3x3, batch 2:
//   fp32: 8x8 1280ch 77 -> 210, 16x16 163 -> 238, 32x32 226 -> 233   -> 2 x 16 x 16 (UNet +5%, +1.9 GB)
//   bf16: 8x8 1280ch 322 -> 451, 16x16 425 -> 466                     -> 0 (UNet +2.5% for +0.27 GB:
//         not worth it against the 3 GB memory goal)
int64_t default_prepack_max_pixels(torch::ScalarType dtype);

// True when this LibTorch has the oneDNN prepacked convolution operators (checked once).
bool conv_prepacking_available();

// Sets Conv2dImpl::prepack_max_pixels on every Conv2d in `module`; returns how many there are.
int64_t enable_conv_prepacking(torch::nn::Module& module, int64_t max_pixels);

}  // namespace sd
