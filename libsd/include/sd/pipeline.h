#pragma once
// Text-to-image with Stable Diffusion 1.x/2.x.
//
//   sd::LoadOptions load;                          // cpu, fp32 by default
//   auto pipe = sd::Pipeline::load("random:sd-v1-5", load);   // or a diffusers folder / .safetensors file
//   sd::GenerateOptions opt;
//   opt.steps = 20; opt.seed = 42;
//   auto result = pipe.generate("a photo of an astronaut riding a horse on mars", opt);
//   sd::write_png("out.png", result.images[0]);
//
// Threads: a Pipeline serves one call at a time; different Pipelines may run at once on different
// threads. Every LoadOptions setting is the pipeline's own: it applies on the calling thread for
// the duration of each call and is restored afterwards, so pipelines loaded with other settings,
// before or after, never change this one's results. Process-wide, by LibTorch's design: the
// attention backend switch (models' LIBSD_ATTENTION, for benchmarks), and on CUDA the TF32 flags
// while a tf32/fp32 call runs. generate() builds a fresh scheduler each call.
// Everything runs under inference mode; latents and scheduler math stay fp32 whatever the precision.
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sd/image.h"
#include "sd/precision.h"
#include "sd/scheduler.h"

namespace sd {

struct LoadOptions {
  std::string device = "cpu";          // "cpu", "cuda", "cuda:N"
  Precision precision = Precision::kFP32;
  bool autocast = false;               // fp32 weights, autocast compute (fp16 on CUDA, bf16 on CPU)
  std::string variant;                 // "fp16": prefer *.fp16.safetensors in a diffusers folder
  // Single-file checkpoints carry no configs or tokenizer: they come from this folder
  // (default: the SD 1.5 configs in libsd's weights/sd-v1-5).
  std::filesystem::path config_dir;
  uint64_t random_seed = 0;            // "random:" models: seed of the weight initialization (a generator of
                                       // its own: the global RNG is left as it was)
  int threads = 0;                     // CPU threads of this pipeline's calls; 0 = all cores
  bool vae_encoder = false;            // also load the VAE encoder (image-to-image); text-to-image never needs it
  bool channels_last = true;           // channels-last memory format for the UNet and VAE convolutions
  // CPU with channels-last: convolutions whose input has at most this many pixels (batch x height x
  // width) keep their weight reordered for oneDNN instead of reordering it at every call: up to 2.7x
  // faster on small inputs, same results, but a second copy of those weights, made at their first
  // use. -1: the library's choice per precision (fp32: 2x16x16, i.e. the UNet's 8x8 and 16x16
  // levels at 512x512, ~1.4 GB more peak memory for SD 1.5; bf16: off), 0: never.
  int64_t prepack_max_pixels = -1;
  bool vae_slicing = false;            // decode a batch one image at a time (bounds decoder memory)
  int64_t attention_slice = 0;         // >0: attention in query slices of this many rows (bounds memory)
  // Flush denormal floats to zero (x86 FTZ/DAZ, on the threads that run this pipeline's calls, while
  // they run). Denormals appear in the late steps and make CPU kernels 10x slower; values below
  // 1e-38 do not change an image.
  bool flush_denormals = true;
};

enum class StepAction { kContinue, kStop };

struct StepInfo {
  int index = 0;                       // scheduler step index, 0-based
  int count = 0;                       // number of scheduler steps (UNet evaluations)
  double timestep = 0;
  const at::Tensor& latents;           // fp32 latents after this step
};

struct GenerateOptions {
  std::string negative_prompt;
  int width = 512, height = 512;       // multiples of the VAE factor (8)
  int steps = 50;
  int batch = 1;                       // images per prompt, one batched forward
  double guidance_scale = 7.5;         // <= 1: no classifier-free guidance
  double eta = 0.0;                    // DDIM
  uint64_t seed = 0;                   // torch.Generator("cpu").manual_seed(seed)
  std::optional<SchedulerKind> scheduler;  // default: the model's scheduler config
  at::Tensor initial_latents;          // [batch, C, H/f, W/f]; used instead of seeded noise (before init_noise_sigma scaling)
  int clip_skip = 0;                   // 1: penultimate CLIP layer (with the final LayerNorm)
  bool decode = true;                  // false: stop at the latents
  bool keep_step_latents = false;      // fill GenerateResult::step_latents
  std::function<StepAction(const StepInfo&)> on_step;
};

struct Timings {
  double text_encoder_s = 0;           // tokenizing and the text encoder
  double denoise_s = 0, decode_s = 0, total_s = 0;
  std::vector<double> unet_s;          // each UNet evaluation (synchronized on CUDA)
  std::vector<double> scheduler_s;     // each scheduler step
};

struct GenerateResult {
  std::vector<Image> images;
  at::Tensor images01;                 // [B, 3, H, W] fp32 in [0, 1]
  at::Tensor init_latents;             // latents before the first step, as used (after init_noise_sigma)
  at::Tensor latents;                  // final latents, fp32
  std::vector<at::Tensor> step_latents;  // after each scheduler step (if keep_step_latents)
  at::Tensor timesteps;
  Timings timings;
  int truncated_tokens = 0;            // prompt tokens dropped beyond the 77-token limit
  bool stopped = false;                // on_step returned kStop
};

// What encode_prompt() made, said explicitly rather than left to tensor shapes.
struct PromptEmbeddings {
  at::Tensor embeddings;               // [2*batch or batch, 77, D]
  int batch = 1;                       // images per prompt
  bool guided = false;                 // the negative prompt's embeddings come first
  int truncated_tokens = 0;            // prompt tokens dropped beyond the 77-token limit
};

struct ModelInfo {
  std::string source;                  // what was loaded: folder, file or "random:..."
  std::string format;                  // "diffusers", "single-file", "random"
  int64_t unet_parameters = 0, vae_parameters = 0, text_encoder_parameters = 0;
  int64_t latent_channels = 4, vae_scale_factor = 8, cross_attention_dim = 768;
  double vae_scaling_factor = 0.18215;
  std::string prediction_type;
  double load_s = 0;
};

class Pipeline {
 public:
  // `model`: a diffusers folder, a single-file .safetensors checkpoint, "random:sd-v1-5" (the
  // full-size SD 1.5 architecture with seeded random weights) or "random:PATH" (any folder's configs).
  static Pipeline load(const std::string& model, const LoadOptions& options = {});

  GenerateResult generate(const std::string& prompt, const GenerateOptions& options = {});

  // Stages, for tools and benchmarks.
  // The UNet's conditioning for `batch` images of one prompt: with guidance [2*batch, 77, D] =
  // [negative x batch, prompt x batch], else [batch, 77, D], in the model's compute dtype.
  PromptEmbeddings encode_prompt(const std::string& prompt, const std::string& negative_prompt, int batch,
                                 bool guidance, int clip_skip = 0);
  // One UNet evaluation: latents fp32 [batch, C, h, w] -> noise prediction, fp32, guided with
  // `guidance_scale` when the embeddings were made with guidance. The batch must match theirs.
  at::Tensor predict_noise(const at::Tensor& latents, const at::Tensor& timestep, const PromptEmbeddings& prompt,
                           double guidance_scale);
  // Latents (already divided by nothing: as the scheduler leaves them) -> images in [0, 1], fp32.
  at::Tensor decode(const at::Tensor& latents);

  const ModelInfo& info() const;
  c10::Device device() const;
  Precision precision() const;
  bool autocast() const;
  // The pixel limit of convolution weight prepacking in effect (LoadOptions::prepack_max_pixels
  // resolved for this device and precision); 0 = off.
  int64_t prepack_max_pixels() const;
  const SchedulerConfig& scheduler_config() const;
  // The CPU threads this pipeline's calls run on (LoadOptions::threads resolved).
  int threads() const;

  Pipeline(Pipeline&&) noexcept;
  Pipeline& operator=(Pipeline&&) noexcept;
  ~Pipeline();

 private:
  struct Impl;
  explicit Pipeline(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The folder that holds libsd's bundled SD 1.5 configs and tokenizer (weights/sd-v1-5): the
// LIBSD_WEIGHTS_DIR environment variable, else the source tree, else the install prefix.
std::filesystem::path bundled_sd15_dir();

// The config folder of a "random:" model: "random:sd-v1-5" -> bundled_sd15_dir(), "random:PATH" ->
// PATH. Empty for any other model string.
std::filesystem::path random_model_configs(const std::string& model);

}  // namespace sd
