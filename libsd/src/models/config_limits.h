#pragma once
// The largest values libsd accepts in a model's config files, in one place. None of them is a
// limit of the code: each is well above what any released Stable Diffusion (1.x, 2.x, and for
// headroom SDXL) has, and well below what would make building the model allocate without bound.
// A config beyond one of them is refused with an error naming the field before anything is built.
#include <cstdint>

namespace sd::limits {

// ---- UNet (diffusers UNet2DConditionModel) ----
// Resolution levels (block_out_channels entries): SD 1.x/2.x have 4, SDXL 3.
inline constexpr int64_t kMaxUNetBlocks = 8;
// Resnets per down block (up blocks have one more): SD 2, SDXL 2.
inline constexpr int64_t kMaxLayersPerBlock = 16;
// Channels of a level: SD 1280, SDXL 1280. 8192 keeps one 3x3 convolution under 0.6 G parameters.
inline constexpr int64_t kMaxChannels = 8192;
// Attention heads of a level: SD 1.x 8, SD 2.x 5..20, SDXL 10..20.
inline constexpr int64_t kMaxAttentionHeads = 256;
// Transformer blocks per attention: SD 1, SDXL 10.
inline constexpr int64_t kMaxTransformerLayers = 32;
// Width of the text conditioning: SD 1.x 768, SD 2.x 1024, SDXL 2048.
inline constexpr int64_t kMaxCrossAttentionDim = 8192;
// Input/output channels of the UNet and latent channels of the VAE: SD 4 (inpainting 9), SD3 16.
inline constexpr int64_t kMaxModelChannels = 64;
// The UNet's sample_size, in latent pixels: SD 64/96, SDXL 128. Sets the default image size.
inline constexpr int64_t kMaxUNetSampleSize = 1024;
// Padding of the downsampling convolutions: diffusers uses 0 or 1.
inline constexpr int64_t kMaxDownsamplePadding = 8;
// The whole UNet, estimated from its config: SD 1.5 0.86 G parameters, SDXL 2.6 G. A random model
// ("random:PATH") has no weights file to bound it, so this bound is what stops a runaway build.
inline constexpr int64_t kMaxUNetParameters = int64_t{20} * 1000 * 1000 * 1000;

// ---- VAE (diffusers AutoencoderKL) ----
// Levels: SD 4. The latents are 2^(levels - 1) times smaller than the image.
inline constexpr int64_t kMaxVAEBlocks = 8;
// The VAE's sample_size, in image pixels (its tile size): SD 512/768, SDXL 1024.
inline constexpr int64_t kMaxVAESampleSize = 8192;
// Image channels in and out: RGB 3.
inline constexpr int64_t kMaxImageChannels = 16;

// ---- text encoder (transformers CLIPTextConfig) ----
inline constexpr int64_t kMaxVocabSize = int64_t{1} << 20;    // CLIP 49408
inline constexpr int64_t kMaxHiddenSize = 8192;                // SD 1.x 768, SD 2.x 1024, bigG 1280
inline constexpr int64_t kMaxIntermediateSize = 65536;         // 3072, 4096, 5120
inline constexpr int64_t kMaxTextLayers = 128;                 // 12, 23 (24 in the file), 32
inline constexpr int64_t kMaxPositionEmbeddings = 4096;        // 77

// ---- scheduler (diffusers scheduler_config.json) ----
// SD's schedules have 1000 training steps; the schedule's tables hold one entry per step.
inline constexpr int64_t kMaxTrainTimesteps = 100000;

// ---- shared ----
// Normalization epsilons and scales: finite, and an epsilon in (0, kMaxEpsilon].
inline constexpr double kMaxEpsilon = 1.0;

}  // namespace sd::limits
