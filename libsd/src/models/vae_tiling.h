#pragma once
// Tiled AutoencoderKL decode and encode with diffusers 0.27's enable_tiling() semantics, so large
// images decode in bounded memory and still match diffusers' tiled output.
// Ref: diffusers src/diffusers/models/autoencoders/autoencoder_kl.py (tiled_decode, tiled_encode,
//      blend_v, blend_h) @ 0.27.2
//
// The geometry comes from the config alone: image tiles of sample_size px, latent tiles of
// int(sample_size / 2^(levels-1)), tiles started every int(tile * 0.75), and the outputs of
// neighbouring tiles blended linearly over int(output tile * 0.25) rows/columns, then cropped to
// output tile - blend. Tiles are blended in diffusers' order and in place (a tile's already
// blended edges are what its right and lower neighbours blend with), so the result is the same
// float32 values as diffusers', not merely close.
#include <torch/torch.h>

#include <cstdint>

#include "models/configs.h"
#include "models/vae.h"

namespace sd {

// One direction's tiling numbers (diffusers' names in brackets).
struct TileGeometry {
  int64_t tile = 0;    // input tile edge: latent px for decode, image px for encode (tile_*_min_size)
  int64_t stride = 0;  // distance between tile starts, in input px (overlap_size)
  int64_t blend = 0;   // output rows/columns blended with the previous tile (blend_extent)
  int64_t keep = 0;    // output rows/columns kept of each tile (row_limit)
};
TileGeometry decode_tile_geometry(const VAEConfig& config);
TileGeometry encode_tile_geometry(const VAEConfig& config);

// When diffusers' decode()/encode() with tiling enabled actually tiles: the last or second-last
// dimension of the input exceeds the input tile edge (a [B, C, H, W] shape).
bool decode_tiling_applies(const VAEConfig& config, at::IntArrayRef latent_shape);
bool encode_tiling_applies(const VAEConfig& config, at::IntArrayRef image_shape);

// diffusers' tiled_decode / tiled_encode: always tile (call *_tiling_applies first for diffusers'
// decode()/encode() behaviour, or use the two functions below). `z` as AutoencoderKLImpl::decode
// takes it (latents / scaling_factor); the image in [-1, 1]. Inputs in the VAE's dtype.
torch::Tensor tiled_decode(AutoencoderKLImpl& vae, const torch::Tensor& z);
LatentDistribution tiled_encode(AutoencoderKLImpl& vae, const torch::Tensor& image);

// diffusers' decode()/encode() after enable_tiling(): tiled where tiling applies, plain otherwise.
torch::Tensor decode_maybe_tiled(AutoencoderKLImpl& vae, const torch::Tensor& z);
LatentDistribution encode_maybe_tiled(AutoencoderKLImpl& vae, const torch::Tensor& image);

// blend_v / blend_h: the first `extent` rows (dim 2) / columns (dim 3) of `tile` become
// prev_end * (1 - y/extent) + tile * (y/extent), prev_end being the last `extent` rows/columns of
// `prev`; extent is first limited to both tensors' sizes. In place in `tile`. The weights round
// as diffusers' Python float scalars do (to the tensor's compute type, fp32 for fp16/bf16).
void blend_rows(const torch::Tensor& prev, torch::Tensor& tile, int64_t extent);
void blend_columns(const torch::Tensor& prev, torch::Tensor& tile, int64_t extent);

// A rough model of the untiled decode's peak activation memory, for "tile when the decode would
// not fit": the largest set of feature maps alive at once while the decoder runs (see the .cpp
// for the accounting), times the batch and the element size. Not counted: the weights, the
// allocator's caching and fragmentation, convolution workspaces. Against diffusers 0.27 on CPU
// (SD 1.5's VAE, NCHW, growth of peak RSS during one decode, one run, 2026-12-01), measured /
// estimated: fp32 256^2 194 / 192 MiB, 384^2 483 / 432 MiB, 512^2 934 / 768 MiB (the gap is
// probably oneDNN's reordered copies of convolution inputs, not verified); bf16 512^2 394 / 384
// MiB. Leave a margin of ~25 % when comparing it with a limit.
// `attention_scores`: whether the mid-block attention holds its [B, HW, HW] fp32 score matrix
// (LibTorch's explicit path, e.g. on CUDA); libsd's fused CPU kernel does not. `query_slice` > 0:
// scores are held for that many query rows at a time.
struct DecodeMemoryOptions {
  bool attention_scores = true;
  int64_t query_slice = 0;
};
int64_t estimate_decode_peak_bytes(const VAEConfig& config, at::IntArrayRef latent_shape, torch::ScalarType dtype,
                                   const DecodeMemoryOptions& options = {});
// The same for tiled_decode: one tile's decode plus the decoded tiles it keeps until blending and
// the assembled output.
int64_t estimate_tiled_decode_peak_bytes(const VAEConfig& config, at::IntArrayRef latent_shape, torch::ScalarType dtype,
                                         const DecodeMemoryOptions& options = {});

}  // namespace sd
