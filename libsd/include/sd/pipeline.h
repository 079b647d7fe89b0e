#pragma once
// Text-to-image, image-to-image and inpainting with Stable Diffusion 1.x/2.x.
//
//   sd::LoadOptions load;                          // cpu, fp32 by default
//   auto pipe = sd::Pipeline::load("random:sd-v1-5", load);   // or a diffusers folder / .safetensors file
//   sd::GenerateOptions opt;
//   opt.steps = 20; opt.seed = 42;
//   auto result = pipe.generate("a photo of an astronaut riding a horse on mars", opt);
//   sd::write_png("out.png", result.images[0]);
//
//   // Image-to-image: load with the VAE encoder, start from an image.
//   load.vae_encoder = true;
//   opt.init_image = sd::read_image("sketch.png");
//   opt.strength = 0.75;                           // the last 75% of the schedule runs
//   // Inpainting: also a mask (white = repaint).
//   opt.mask = sd::read_image("mask.png");
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

#include "sd/export.h"
#include "sd/image.h"
#include "sd/lora.h"
#include "sd/precision.h"
#include "sd/scheduler.h"

namespace sd {

// VAE tiling as diffusers' AutoencoderKL.enable_tiling(): tiles of the VAE's sample_size with 25 %
// overlap, blended linearly. Bounds the decoder's memory for large images; the tile seams make the
// image differ slightly from the untiled one.
enum class VaeTiling { kOff, kOn, kAuto };

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
  // Also load the VAE encoder: image-to-image and inpainting need it (generate() refuses an init image
  // without it); text-to-image does not, and saves its memory (34 M parameters for SD 1.5).
  bool vae_encoder = false;
  bool channels_last = true;           // channels-last memory format for the UNet and VAE convolutions
  // CPU with channels-last: convolutions whose input has at most this many pixels (batch x height x
  // width) keep their weight reordered for oneDNN instead of reordering it at every call: up to 2.7x
  // faster on small inputs, same results, but a second copy of those weights, made at their first
  // use. -1: the library's choice per precision (fp32: 2x16x16, i.e. the UNet's 8x8 and 16x16
  // levels at 512x512, ~1.4 GB more peak memory for SD 1.5; bf16: off), 0: never.
  int64_t prepack_max_pixels = -1;
  bool vae_slicing = false;            // decode a batch one image at a time (bounds decoder memory)
  VaeTiling vae_tiling = VaeTiling::kOff;  // kAuto: tile where the untiled decode would exceed vae_memory_limit
  // kAuto's limit in bytes for the decoder's activations (an estimate, ~25 % low at fp32 512x512);
  // 0: the memory the system has available now (/proc/meminfo MemAvailable; on CUDA give a limit).
  int64_t vae_memory_limit = 0;
  // The tiny autoencoder (TAESD) instead of the model's VAE, for decoding (and encoding, where it has
  // an encoder): a diffusers AutoencoderTiny folder, or madebyollin's taesd_decoder.safetensors (with
  // taesd_encoder.safetensors beside it); "random:taesd" for timing. Much faster, approximate images.
  std::string vae_tiny;
  // A tiny autoencoder for the previews only (GenerateOptions::preview_every), beside the model's VAE,
  // which still makes the final image: the same forms as vae_tiny. Without it previews use vae_tiny
  // where that is given, else the model's VAE (a full decode per preview: slow).
  std::string preview_vae_tiny;
  // A VAE replacing the model's (decoding and encoding): a diffusers VAE folder (config.json +
  // diffusion_pytorch_model.safetensors, its own config), or a single .safetensors VAE checkpoint
  // with the original LDM names (e.g. vae-ft-mse-840000-ema-pruned.safetensors) or diffusers' names,
  // which must fit the model's vae/config.json. Works with "random:" models too. Checked before
  // binding: another kind of file, or a VAE of another size, is an sd::Error naming the file.
  std::string vae;
  int64_t attention_slice = 0;         // >0: attention in query slices of this many rows (bounds memory)
  // generate() first estimates the memory of its largest stage (the UNet's activations, the VAE's
  // decode or encode) and refuses, with an sd::Error saying what it needs and what lowers it, a
  // request above this many bytes. 0: the memory the system has available at each call on the CPU
  // (/proc/meminfo MemAvailable), no check on CUDA; -1: never refuse. An estimate that errs low.
  int64_t memory_limit = 0;
  // Flush denormal floats to zero (x86 FTZ/DAZ, on the threads that run this pipeline's calls, while
  // they run). Denormals appear in the late steps and make CPU kernels 10x slower; values below
  // 1e-38 do not change an image.
  bool flush_denormals = true;
  // LoRAs merged into the UNet and text encoder at load (sd/lora.h), each with its own scale:
  // no cost per step. Pipeline::set_loras changes them later. Strict unless lora_lenient: a key that
  // matches no layer or does not fit it fails the load; lenient skips it (Pipeline::lora_report()).
  std::vector<LoraSpec> loras;
  bool lora_lenient = false;
  // CUDA: capture the UNet evaluation as a CUDA graph once per (batch, size, precision) and replay
  // it at every step: at batch 1 the launch overhead of eager execution dominates. Where capture
  // fails the pipeline runs eagerly and says so once (an info line). No effect on the CPU.
  // set_loras keeps the graphs: LoRAs change the weights in place, and a graph reads them anew.
  bool cuda_graphs = true;
};

enum class StepAction { kContinue, kStop };

struct StepInfo {
  int index = 0;                       // 0-based among the steps this generation runs
  int count = 0;                       // number of steps it runs (UNet evaluations; fewer with strength < 1)
  double timestep = 0;
  const at::Tensor& latents;           // fp32 latents after this step
  // On the steps GenerateOptions::preview_every asks for: those latents decoded by the preview
  // decoder (ModelInfo::preview_decoder), [B, 3, H, W] fp32 in [0, 1] on the CPU; sd::to_images
  // makes images of it. Undefined on the other steps. The latents of the early steps are still
  // mostly noise, and so are their previews.
  at::Tensor preview;
};

struct GenerateOptions {
  std::string negative_prompt;
  // Output size, multiples of 8. 0: diffusers' default, the UNet's sample_size x the VAE factor (512
  // for SD 1.5, 768 for SD 2.x 768-v), and for image-to-image without a mask the init image's size
  // rounded down to a multiple of the VAE factor (diffusers' image processor).
  int width = 0, height = 0;
  int steps = 50;
  int batch = 1;                       // images per prompt, one batched forward
  double guidance_scale = 7.5;         // <= 1: no classifier-free guidance
  double eta = 0.0;                    // DDIM
  uint64_t seed = 0;                   // torch.Generator("cpu").manual_seed(seed)
  std::optional<SchedulerKind> scheduler;  // default: the model's scheduler config
  // [batch, C, H/f, W/f], used instead of the seeded noise: text-to-image and image-to-image draw no
  // noise then (it is scaled by init_noise_sigma, or added to the image latents); inpainting takes it
  // as diffusers' `latents`: the start, times init_noise_sigma, whatever the strength.
  at::Tensor initial_latents;
  int clip_skip = 0;                   // 1: penultimate CLIP layer (with the final LayerNorm)
  bool decode = true;                  // false: stop at the latents
  bool keep_step_latents = false;      // fill GenerateResult::step_latents
  std::function<StepAction(const StepInfo&)> on_step;
  // With on_step: a preview image every this many steps (after steps N, 2N, ... as StepInfo counts
  // them, i.e. UNet evaluations: PNDM runs one more than `steps`), in StepInfo::preview.
  // 0: none. Its time is in Timings::preview_s (and in denoise_s, whose loop it runs in).
  int preview_every = 0;

  // Image-to-image (diffusers' StableDiffusionImg2ImgPipeline): start from this image, VAE-encoded and
  // noised to `strength`, instead of from pure noise. Resized with Pillow's Lanczos filter when its
  // size differs from the output size.
  std::optional<Image> init_image;
  // Inpainting (StableDiffusionInpaintPipeline), with init_image: repaint where the mask is white
  // (luma >= 128), keep where it is black; resized like the image. An inpainting UNet (9 input
  // channels) sees the mask and the masked image; any other model gets the image re-noised and
  // pasted back outside the mask after every step.
  std::optional<Image> mask;
  // The share of the schedule that runs from the init image: the last int(steps * strength) steps
  // (1: all of them, from pure noise for inpainting). Default 0.8 for image-to-image and 1.0 for
  // inpainting, diffusers' defaults. Only with init_image.
  std::optional<double> strength;
};

struct Timings {
  double text_encoder_s = 0;           // tokenizing and the text encoder
  double encode_s = 0;                 // VAE encoding of the init image (and of the masked image)
  double denoise_s = 0, decode_s = 0, total_s = 0;
  double preview_s = 0;                // the previews' decodes (GenerateOptions::preview_every)
  // Each UNet evaluation and each scheduler step. On CUDA timed by CUDA events on the device's
  // stream and read after the loop, so the loop never waits for the GPU to time a step.
  std::vector<double> unet_s;
  std::vector<double> scheduler_s;
};

struct GenerateResult {
  std::vector<Image> images;
  at::Tensor images01;                 // [B, 3, H, W] fp32 in [0, 1]
  at::Tensor init_latents;             // latents before the first step, as used (after init_noise_sigma)
  at::Tensor latents;                  // final latents, fp32
  std::vector<at::Tensor> step_latents;  // after each scheduler step (if keep_step_latents)
  at::Tensor timesteps;                // the timesteps run (image-to-image: the schedule's tail)
  int first_step = 0;                  // the schedule index of timesteps[0] (image-to-image skips the rest)
  double strength = 0;                 // image-to-image and inpainting: the strength used
  int width = 0, height = 0;           // the output size used
  Timings timings;
  int truncated_tokens = 0;            // prompt tokens dropped beyond the 77-token limit
  bool stopped = false;                // on_step returned kStop
  bool cuda_graph = false;             // the UNet evaluations replayed a captured CUDA graph
};

// What encode_prompt() made, said explicitly rather than left to tensor shapes.
struct PromptEmbeddings {
  at::Tensor embeddings;               // [2*batch or batch, 77, D]
  int batch = 1;                       // images per prompt
  bool guided = false;                 // the negative prompt's embeddings come first
  int truncated_tokens = 0;            // prompt tokens dropped beyond the 77-token limit
};

// One request of Pipeline::generate_batch: its own prompt, negative prompt and seed.
struct BatchPrompt {
  std::string prompt;
  std::string negative_prompt;
  uint64_t seed = 0;                   // torch.Generator("cpu").manual_seed(seed), this item's alone
};

struct ModelInfo {
  std::string source;                  // what was loaded: folder, file or "random:..."
  std::string format;                  // "diffusers", "single-file", "random"
  int64_t unet_parameters = 0, vae_parameters = 0, text_encoder_parameters = 0;
  int64_t latent_channels = 4, vae_scale_factor = 8, cross_attention_dim = 768;
  int64_t unet_in_channels = 4;        // 9: an inpainting model (latents + mask + masked-image latents)
  int64_t default_width = 512, default_height = 512;  // the UNet's sample_size x the VAE factor
  bool has_vae_encoder = false;        // loaded with LoadOptions::vae_encoder
  std::string decoder = "AutoencoderKL";  // or "AutoencoderTiny" (LoadOptions::vae_tiny)
  // What decodes the previews: "AutoencoderTiny" (LoadOptions::preview_vae_tiny or vae_tiny) or
  // "AutoencoderKL" (the model's VAE).
  std::string preview_decoder = "AutoencoderKL";
  // Where the AutoencoderKL's weights came from: the model's VAE file, "random weights", or
  // LoadOptions::vae's file with its layout ("PATH (single file, LDM names)").
  std::string vae_source;
  double vae_scaling_factor = 0.18215;
  std::string prediction_type;
  double load_s = 0;
};

// What generate() estimates before it runs anything (LoadOptions::memory_limit): the peak
// activations of each stage the request runs, at its size and batch. Not counted: the weights
// (already loaded), what the allocator keeps cached, convolution workspaces. docs/reliability.md
// compares it with measured peaks.
struct MemoryEstimate {
  struct Stage {
    std::string name;                  // "the UNet", "the VAE decode", "the VAE encode"
    int64_t bytes = 0;
  };
  std::vector<Stage> stages;           // the stages this request runs
  std::string peak_stage;              // the largest of them
  int64_t peak_bytes = 0;
  // What generate() refuses above: LoadOptions::memory_limit, or the memory available now on the
  // CPU; 0 where it does not check (memory_limit = -1, or CUDA without a limit).
  int64_t limit_bytes = 0;
};

class SD_API Pipeline {
 public:
  // `model`: a diffusers folder, a single-file .safetensors checkpoint, "random:sd-v1-5" (the
  // full-size SD 1.5 architecture with seeded random weights) or "random:PATH" (any folder's configs).
  static Pipeline load(const std::string& model, const LoadOptions& options = {});

  GenerateResult generate(const std::string& prompt, const GenerateOptions& options = {});

  // Several text-to-image requests as one batched generation, as diffusers does with a list of prompts
  // and a list of generators: item i's noise (initial and scheduler) comes from its own generator
  // seeded with items[i].seed, and images[i] is items[i]'s image, the one generate() makes for it
  // alone (up to the batched kernels' rounding: tests/serve/test_batch_parity.cpp measures it). Every other
  // setting comes from `options`, which must leave negative_prompt, seed, batch (1), initial_latents,
  // init_image and mask unset.
  GenerateResult generate_batch(const std::vector<BatchPrompt>& items, const GenerateOptions& options = {});

  // generate()'s memory estimate for `options` (the size resolved as generate() resolves it),
  // computed without running or allocating anything: a server can refuse or queue a request by it.
  MemoryEstimate estimate_memory(const GenerateOptions& options = {}) const;

  // Stages, for tools and benchmarks.
  // The UNet's conditioning for `batch` images of one prompt: with guidance [2*batch, 77, D] =
  // [negative x batch, prompt x batch], else [batch, 77, D], in the model's compute dtype.
  PromptEmbeddings encode_prompt(const std::string& prompt, const std::string& negative_prompt, int batch,
                                 bool guidance, int clip_skip = 0);
  // One UNet evaluation: latents fp32 [batch, C, h, w] -> noise prediction, fp32, guided with
  // `guidance_scale` when the embeddings were made with guidance. The batch must match theirs.
  // `conditioning`: an inpainting UNet's extra input channels, [batch, 5, h, w] = the mask and the
  // masked image's latents, appended to the latents' channels (for both halves of the guidance).
  at::Tensor predict_noise(const at::Tensor& latents, const at::Tensor& timestep, const PromptEmbeddings& prompt,
                           double guidance_scale, const at::Tensor& conditioning = {});
  // Images [B, 3, H, W] in [-1, 1] -> latents fp32 [B, C, H/f, W/f], times the VAE's scaling factor:
  // a sample of the encoder's distribution drawn from `generator` (diffusers' latent_dist.sample,
  // randn in float32 on the CPU), or its mean when generator is null. Needs LoadOptions::vae_encoder.
  at::Tensor encode(const at::Tensor& images, at::Generator* generator);
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

  // Replaces the LoRAs in effect (LoadOptions::loras, or a previous call) by `loras`; {} restores the
  // base model bit for bit. Everything is read and checked first: on an sd::Error (a file that
  // cannot be read, a key that matches no layer unless lenient, a shape that does not fit) the
  // pipeline is left as it was. Keeps a copy of the base weight of every layer a LoRA changes (in
  // its stored dtype) while LoRAs are in effect.
  LoraReport set_loras(const std::vector<LoraSpec>& loras, bool lenient = false);
  const std::vector<LoraSpec>& loras() const;   // in effect now
  const LoraReport& lora_report() const;        // of the last change (load or set_loras)

  Pipeline(Pipeline&&) noexcept;
  Pipeline& operator=(Pipeline&&) noexcept;
  ~Pipeline();

 private:
  struct SD_LOCAL Impl;
  explicit Pipeline(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sd
