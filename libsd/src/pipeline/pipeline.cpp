// Ref: diffusers src/diffusers/pipelines/stable_diffusion/pipeline_stable_diffusion.py @ 0.27
#include "sd/pipeline.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/record_function.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <chrono>
#include <fstream>
#include <cmath>
#include <thread>

#include "core/host_to_device.h"
#include "core/interval_timer.h"
#include "core/log_macros.h"
#include "lora/lora_apply.h"
#include "models/attention.h"
#include "models/conv2d.h"
#include "pipeline/components.h"
#include "pipeline/execution_scope.h"
#include "pipeline/image_inputs.h"
#include "pipeline/image_start.h"
#include "pipeline/memory_estimate.h"
#include "pipeline/out_of_memory.h"
#include "pipeline/unet_graph_cache.h"
#include "pipeline/unet_graph_capture.h"
#include "core/torch_version.h"
#include "models/vae_tiling.h"
#include "sd/error.h"

namespace sd {

namespace {

using Clock = std::chrono::steady_clock;

c10::Device parse_device(const std::string& name) {
  c10::Device device(c10::kCPU);
  try {
    device = c10::Device(name);
  } catch (const std::exception&) {
    SD_FAIL("unknown device '", name, "' (expected cpu, cuda or cuda:N)");
  }
  SD_CHECK(device.is_cpu() || device.is_cuda(), "unsupported device '", name, "' (expected cpu, cuda or cuda:N)");
  SD_CHECK(!device.is_cuda() || torch::cuda::is_available(), "device '", name,
           "' requested, but this LibTorch has no CUDA or no GPU is visible");
  return device;
}

ExecutionSettings execution_settings(const LoadOptions& options) {
  ExecutionSettings settings;
  settings.threads = options.threads > 0 ? options.threads : static_cast<int>(std::thread::hardware_concurrency());
  settings.attention_slice = options.attention_slice;
  settings.flush_denormals = options.flush_denormals;
  return settings;
}

// Not every LibTorch build has every kernel in every dtype (1.13's CPU build has no fp16 LayerNorm).
// Try the model's operations once on tiny inputs, so the user learns it at load time, clearly.
void check_dtype_supported(const c10::Device& device, c10::ScalarType dtype, Precision precision) {
  if (dtype == c10::kFloat) return;
  try {
    auto opts = torch::TensorOptions().device(device).dtype(dtype);
    auto x = torch::ones({1, 4, 4, 4}, opts);
    torch::group_norm(x, 2, torch::ones({4}, opts), torch::zeros({4}, opts));
    torch::layer_norm(x, {4}, torch::ones({4}, opts), torch::zeros({4}, opts));
    torch::conv2d(x, torch::ones({4, 4, 3, 3}, opts), {}, 1, 1);
    torch::softmax(torch::gelu(x), -1);
  } catch (const std::exception& e) {
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    SD_FAIL("precision ", precision_name(precision), " is not supported on ", device.str(), " by this LibTorch (",
            what, "); use ", device.is_cpu() ? "bf16 or fp32" : "fp32 or tf32");
  }
}

// Convolution weights in channels-last: oneDNN (CPU) and cuDNN pick their fastest kernels for it.
void to_channels_last(torch::nn::Module& module) {
  for (auto& p : module.parameters()) {
    if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
  }
}

}  // namespace

struct Pipeline::Impl {
  Components parts;
  LoadOptions options;
  c10::Device device{c10::kCPU};
  c10::ScalarType dtype = c10::kFloat;  // weights and model inputs
  torch::MemoryFormat memory_format = torch::MemoryFormat::Contiguous;
  int64_t prepack_max_pixels = 0;  // resolved LoadOptions::prepack_max_pixels
  ExecutionSettings execution{};   // applied around every public call (execution_scope.h)
  lora::LoraState lora;            // LoRAs merged into the weights, and the base weights they replaced
  std::vector<LoraSpec> loras;     // in effect
  LoraReport lora_report;
  // LoadOptions::cuda_graphs on a CUDA device: the UNet's captured graphs (unet_graph_cache.h).
  std::unique_ptr<UNetGraphCache> unet_graphs;
  bool unet_replayed = false;      // the last predict_noise replayed a graph

  // Replaces the LoRAs in effect; times the change including the device's work.
  void set_loras(const std::vector<LoraSpec>& specs, bool lenient) {
    const auto start = Clock::now();
    lora::LoraModels models{parts.unet.get(), parts.text_encoder.get(), unet_layout_of(parts.unet->config)};
    LoraReport report = lora.set(specs, lenient, models);
    report.seconds = seconds_since(start);
    for (const std::string& skipped : report.skipped) SD_LOG_WARN("LoRA key skipped: ", skipped);
    lora_report = std::move(report);
    loras = specs;
  }

  // After an out-of-memory: the captured graphs' memory pools go too (recaptured at the next use).
  void forget_graphs() {
    if (unet_graphs) unet_graphs->clear();
  }

  void sync() const {
    if (device.is_cuda()) torch::cuda::synchronize(device.index());
  }
  double seconds_since(Clock::time_point start) const {
    sync();
    return std::chrono::duration<double>(Clock::now() - start).count();
  }
  // generate() and generate_batch(): one prompt (its `batch` images from one generator), or several
  // text-to-image items, each item's noise from its own generator, concatenated in item order.
  GenerateResult run(Pipeline& self, const std::vector<BatchPrompt>& items, const GenerateOptions& options);
  torch::Tensor model_input(const torch::Tensor& x) const { return x.to(device, dtype).contiguous(memory_format); }
  // StepInfo::preview of `latents`: [B, 3, H, W] fp32 in [0, 1] on the CPU, from
  // LoadOptions::preview_vae_tiny, else from what decode() uses.
  torch::Tensor preview(Pipeline& self, const torch::Tensor& latents);

  // Whether the VAE tiles this decode (latents) or encode (image) shape: LoadOptions::vae_tiling.
  // kAuto compares the untiled decode's estimated activations (for an encode: of the latents it
  // makes) with the limit; diffusers' own condition (larger than one tile) applies in every case.
  bool tile(at::IntArrayRef shape, bool encode) const {
    if (options.vae_tiling == VaeTiling::kOff) return false;
    const VAEConfig& config = parts.vae->config;
    if (options.vae_tiling == VaeTiling::kOn) return true;
    std::vector<int64_t> latent_shape = shape.vec();
    if (encode) {
      const int64_t f = parts.info.vae_scale_factor;
      latent_shape = {shape[0], parts.info.latent_channels, shape[2] / f, shape[3] / f};
    }
    DecodeMemoryOptions memory;
    memory.attention_scores = device.is_cuda();  // the fused CPU kernel holds no score matrix
    memory.query_slice = options.attention_slice;
    const int64_t need = estimate_decode_peak_bytes(config, latent_shape, dtype, memory);
    const int64_t limit = options.vae_memory_limit > 0 ? options.vae_memory_limit : available_memory_bytes();
    return limit > 0 && need > limit;  // an unknown limit (no /proc/meminfo) does not tile
  }

  // The attention's score matrix is materialized (and counted) with the plain-ops backend and on
  // CUDA before LibTorch 2's fused kernels; the fused CPU kernel holds none.
  bool attention_holds_scores() const {
    return attention_backend() == AttentionBackend::kOps || (device.is_cuda() && !SD_TORCH_AT_LEAST(2, 0));
  }

  // What each stage of a generation of `images` images of width x height needs
  // (pipeline/memory_estimate.h), and the limit check_memory compares the largest with.
  MemoryEstimate estimate(const GenerateOptions& o, int64_t images, int width, int height) const {
    MemoryEstimate estimate;
    if (options.memory_limit > 0) {
      estimate.limit_bytes = options.memory_limit;
    } else if (options.memory_limit == 0 && device.is_cpu()) {
      estimate.limit_bytes = available_memory_bytes();
    }
    const ModelInfo& info = parts.info;
    const int64_t f = info.vae_scale_factor;
    const int64_t h = height / f, w = width / f;
    ActivationMemoryOptions activations;
    activations.attention_scores = attention_holds_scores();
    activations.query_slice = options.attention_slice;
    if (device.is_cpu()) activations.overhead = kCpuUNetOverhead;  // not measured on CUDA yet
    const bool guided = o.guidance_scale > 1.0;
    estimate.stages.push_back({"the UNet", estimate_unet_peak_bytes(parts.unet->config, images * (guided ? 2 : 1), h,
                                                                     w, dtype, activations)});
    if (!parts.vae_tiny) {
      DecodeMemoryOptions decode_memory;
      decode_memory.attention_scores = activations.attention_scores || device.is_cuda();
      decode_memory.query_slice = options.attention_slice;
      const std::vector<int64_t> latents{options.vae_slicing ? 1 : images, info.latent_channels, h, w};
      const VAEConfig& vae = parts.vae->config;
      auto vae_bytes = [&] {
        return tile(latents, false) ? estimate_tiled_decode_peak_bytes(vae, latents, dtype, decode_memory)
                                    : estimate_decode_peak_bytes(vae, latents, dtype, decode_memory);
      };
      // The encoder mirrors the decoder: its estimate stands for the init image's encode too.
      // Previews without a TAESD of their own are the same decode, at the steps that ask for one.
      const bool vae_previews = o.preview_every > 0 && o.on_step && !parts.preview_tiny;
      if (o.decode || vae_previews) estimate.stages.push_back({"the VAE decode", vae_bytes()});
      if (o.init_image) estimate.stages.push_back({"the VAE encode", vae_bytes()});
    }
    const auto& largest = *std::max_element(estimate.stages.begin(), estimate.stages.end(),
                                            [](const auto& a, const auto& b) { return a.bytes < b.bytes; });
    estimate.peak_stage = largest.name;
    estimate.peak_bytes = largest.bytes;
    return estimate;
  }

  // LoadOptions::memory_limit: refuse a request whose largest stage cannot fit, before any of it
  // is allocated.
  void check_memory(const GenerateOptions& o, int64_t images, int width, int height) const {
    if (options.memory_limit < 0) return;
    const MemoryEstimate need = estimate(o, images, width, height);
    const int64_t limit = need.limit_bytes;
    if (limit <= 0 || need.peak_bytes <= limit) return;
    std::string lower = "a smaller width x height";
    if (images > 1) lower += ", a smaller batch";
    if (need.peak_stage == "the UNet") {
      if (attention_holds_scores() && options.attention_slice == 0) lower += ", attention slicing (attention_slice)";
    } else {
      if (options.vae_tiling == VaeTiling::kOff) lower += ", VAE tiling (vae_tiling)";
      if (images > 1 && !options.vae_slicing) lower += ", VAE slicing (vae_slicing)";
      lower += ", the tiny autoencoder (vae_tiny)";
    }
    SD_FAIL("out of memory (estimated before running): a ", width, "x", height, " generation of batch ", images,
            " needs about ", format_memory(static_cast<double>(need.peak_bytes)), " for ", need.peak_stage,
            ", more than ", options.memory_limit > 0 ? "the memory limit of " : "the memory available, ",
            format_memory(static_cast<double>(limit)),
            options.memory_limit > 0 ? " (memory_limit)" : " (memory_limit = -1 skips this check)",
            "; lower it with ", lower);
  }
};

Pipeline::Pipeline(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Pipeline::Pipeline(Pipeline&&) noexcept = default;
Pipeline& Pipeline::operator=(Pipeline&&) noexcept = default;
Pipeline::~Pipeline() = default;

Pipeline Pipeline::load(const std::string& model, const LoadOptions& options) {
  const c10::Device device = parse_device(options.device);
  SD_CHECK(options.threads >= 0, "threads must be 0 (all cores) or positive, got ", options.threads);
  SD_CHECK(options.attention_slice >= 0, "attention_slice must be 0 (off) or positive, got ", options.attention_slice);
  SD_CHECK(options.vae_memory_limit >= 0, "vae_memory_limit must be 0 (available memory) or positive, got ",
           options.vae_memory_limit);
  SD_CHECK(options.memory_limit >= -1, "memory_limit must be -1 (no check), 0 (available memory) or positive, got ",
           options.memory_limit);
  SD_CHECK(options.prepack_max_pixels >= -1, "prepack_max_pixels must be -1 (libsd's choice), 0 (off) or positive, got ",
           options.prepack_max_pixels);
  const ExecutionSettings execution = execution_settings(options);
  ExecutionScope scope(execution);
  c10::InferenceMode inference;
  const c10::ScalarType dtype = weight_dtype(options.precision, options.autocast);
  check_dtype_supported(device, dtype, options.precision);
  auto impl = std::make_unique<Impl>(Impl{load_components(model, options), options, device});
  impl->dtype = dtype;
  impl->execution = execution;
  if (options.channels_last && device.is_cpu()) {
    impl->prepack_max_pixels =
        options.prepack_max_pixels >= 0 ? options.prepack_max_pixels : default_prepack_max_pixels(dtype);
  }
  auto& p = impl->parts;
  std::vector<torch::nn::Module*> modules{p.text_encoder.get(), p.unet.get(), p.vae.get()};
  if (p.vae_tiny) modules.push_back(p.vae_tiny.get());
  if (p.preview_tiny) modules.push_back(p.preview_tiny.get());
  for (torch::nn::Module* m : modules) {
    m->eval();
    m->to(device, impl->dtype);
    if (options.channels_last) to_channels_last(*m);
    enable_conv_prepacking(*m, impl->prepack_max_pixels);
  }
  if (options.channels_last) impl->memory_format = torch::MemoryFormat::ChannelsLast;
  if (device.is_cuda() && options.cuda_graphs) impl->unet_graphs = std::make_unique<UNetGraphCache>(capture_unet_graph);
  if (!options.loras.empty()) impl->set_loras(options.loras, options.lora_lenient);
  return Pipeline(std::move(impl));
}

const ModelInfo& Pipeline::info() const { return impl_->parts.info; }

c10::Device Pipeline::device() const { return impl_->device; }
Precision Pipeline::precision() const { return impl_->options.precision; }
bool Pipeline::autocast() const { return impl_->options.autocast; }
int64_t Pipeline::prepack_max_pixels() const { return impl_->prepack_max_pixels; }
const SchedulerConfig& Pipeline::scheduler_config() const { return impl_->parts.scheduler_config; }
int Pipeline::threads() const {
  return impl_->execution.threads > 0 ? impl_->execution.threads : at::get_num_threads();
}

LoraReport Pipeline::set_loras(const std::vector<LoraSpec>& loras, bool lenient) {
  ExecutionScope scope(impl_->execution);
  impl_->set_loras(loras, lenient);
  return impl_->lora_report;
}
const std::vector<LoraSpec>& Pipeline::loras() const { return impl_->loras; }
const LoraReport& Pipeline::lora_report() const { return impl_->lora_report; }

PromptEmbeddings Pipeline::encode_prompt(const std::string& prompt, const std::string& negative_prompt, int batch,
                                         bool guidance, int clip_skip) {
  RECORD_USER_SCOPE("sd::text_encoder");
  c10::InferenceMode inference;
  ExecutionScope scope(impl_->execution);
  PrecisionScope precision(impl_->options.precision, impl_->options.autocast, impl_->device);
  SD_CHECK(batch >= 1, "encode_prompt: batch must be at least 1, got ", batch);
  auto& p = impl_->parts;
  PromptEmbeddings out;
  out.batch = batch;
  out.guided = guidance;
  auto ids_of = [&](const std::string& text, int* truncated) {
    TokenizedPrompt tokens = p.tokenizer.encode(text);
    if (truncated != nullptr) *truncated = tokens.num_truncated;
    return torch::tensor(tokens.ids, torch::kLong).unsqueeze(0);
  };
  // Negative (or empty) prompt first: the batch order diffusers uses for [uncond, cond].
  torch::Tensor ids = ids_of(prompt, &out.truncated_tokens);
  if (guidance) ids = torch::cat({ids_of(negative_prompt, nullptr), ids});
  auto embeddings = p.text_encoder->encode(ids.to(impl_->device), clip_skip);  // [1 or 2, 77, D]
  // Each prompt repeated `batch` times: [neg x batch, prompt x batch].
  out.embeddings = embeddings.repeat_interleave(batch, 0);
  if (out.truncated_tokens > 0) {
    SD_LOG_WARN("the prompt is longer than the text encoder's limit: ", out.truncated_tokens, " tokens were dropped");
  }
  return out;
}

// Each public stage is a function-try-block like generate()'s (below): an out-of-memory becomes one
// sd::OutOfMemoryError after the failed call's tensors are released.
at::Tensor Pipeline::predict_noise(const at::Tensor& latents, const at::Tensor& timestep, const PromptEmbeddings& prompt,
                                   double guidance_scale, const at::Tensor& conditioning) try {
  RECORD_USER_SCOPE("sd::unet");  // a stage for profilers (bench_latency --profile)
  c10::InferenceMode inference;
  ExecutionScope scope(impl_->execution);
  PrecisionScope precision(impl_->options.precision, impl_->options.autocast, impl_->device);
  SD_CHECK(prompt.embeddings.defined(), "predict_noise: the prompt embeddings are empty (use encode_prompt)");
  SD_CHECK(latents.dim() == 4 && latents.size(0) == prompt.batch, "predict_noise: latents ", latents.sizes(),
           " for prompt embeddings of batch ", prompt.batch, " (expected [", prompt.batch, ", C, h, w])");
  const ModelInfo& info = impl_->parts.info;
  const int64_t extra = info.unet_in_channels - info.latent_channels;
  SD_CHECK(extra == 0 || conditioning.defined(), "predict_noise: this UNet takes ", info.unet_in_channels,
           " input channels (an inpainting model): give the mask and masked-image latents as conditioning");
  const bool guidance = prompt.guided;
  auto x = guidance ? torch::cat({latents, latents}) : latents;
  if (conditioning.defined()) {
    SD_CHECK(conditioning.dim() == 4 && conditioning.size(0) == latents.size(0) && conditioning.size(1) == extra &&
                 conditioning.size(2) == latents.size(2) && conditioning.size(3) == latents.size(3),
             "predict_noise: conditioning ", conditioning.sizes(), " for latents ", latents.sizes(), " (expected [",
             latents.size(0), ", ", extra, ", ", latents.size(2), ", ", latents.size(3), "])");
    const auto c = conditioning.to(x.device(), torch::kFloat);
    x = torch::cat({x, guidance ? torch::cat({c, c}) : c}, 1);
  }
  auto& unet = impl_->parts.unet;
  const UNetForward forward = [&](const std::vector<at::Tensor>& in) {
    return unet->forward(in[0], in[1], in[2]).to(torch::kFloat).contiguous();
  };
  const std::vector<at::Tensor> inputs{impl_->model_input(x), host_to_device(timestep, impl_->device),
                                       prompt.embeddings.to(impl_->device, impl_->dtype)};
  at::Tensor noise;
  impl_->unet_replayed = false;
  if (impl_->unet_graphs) {
    const at::Tensor& sample = inputs[0];
    UNetGraphKey key;
    key.batch = sample.size(0);
    key.channels = sample.size(1);
    key.height = sample.size(2);
    key.width = sample.size(3);
    key.timestep_entries = inputs[1].numel();
    key.context_tokens = inputs[2].size(1);
    key.context_dim = inputs[2].size(2);
    key.dtype = sample.scalar_type();
    key.autocast = impl_->options.autocast;
    UNetRun run = impl_->unet_graphs->run(key, inputs, forward);
    noise = std::move(run.output);
    impl_->unet_replayed = run.replayed;
  } else {
    noise = forward(inputs);
  }
  if (!guidance) return noise;
  auto halves = noise.chunk(2);
  return halves[0] + guidance_scale * (halves[1] - halves[0]);
} catch (const std::exception& e) {
  if (!is_out_of_memory(e)) throw;
  impl_->forget_graphs();
  throw_out_of_memory(e, impl_->device, detail::concat("in predict_noise on latents ", latents.sizes()),
                      "lower the batch or size, or use attention slicing");
}

at::Tensor Pipeline::encode(const at::Tensor& images, at::Generator* generator) try {
  RECORD_USER_SCOPE("sd::vae_encode");
  c10::InferenceMode inference;
  ExecutionScope scope(impl_->execution);
  PrecisionScope precision(impl_->options.precision, impl_->options.autocast, impl_->device);
  const double scaling = impl_->parts.info.vae_scaling_factor;
  auto& tiny = impl_->parts.vae_tiny;
  if (tiny && tiny->encoder) {
    // TAESD encodes to latents directly: nothing is sampled, nothing drawn (diffusers' retrieve_latents).
    SD_CHECK(images.dim() == 4 && images.size(1) == tiny->config.in_channels, "encode: images must be [B, ",
             tiny->config.in_channels, ", H, W], got ", images.sizes());
    return (tiny->encode(impl_->model_input(images)).to(torch::kFloat) * tiny->config.scaling_factor).contiguous();
  }
  auto& vae = impl_->parts.vae;
  SD_CHECK(!vae->encoder.is_empty(),
           "encode: this pipeline was loaded without the VAE encoder (set LoadOptions::vae_encoder, or sd "
           "generate's --init-image does)");
  SD_CHECK(images.dim() == 4 && images.size(1) == vae->config.in_channels, "encode: images must be [B, ",
           vae->config.in_channels, ", H, W], got ", images.sizes());
  const auto x = impl_->model_input(images);
  const LatentDistribution dist = impl_->tile(x.sizes(), true) ? encode_maybe_tiled(*vae, x) : vae->encode(x);
  const auto mean = dist.mean.to(torch::kFloat);
  at::Tensor latents = mean;
  if (generator != nullptr) {
    const auto sample =
        torch::randn(mean.sizes(), *generator, torch::TensorOptions().dtype(torch::kFloat)).to(mean.device());
    latents = mean + dist.std.to(torch::kFloat) * sample;
  }
  return (latents * scaling).contiguous();
} catch (const std::exception& e) {
  if (!is_out_of_memory(e)) throw;
  impl_->forget_graphs();
  throw_out_of_memory(e, impl_->device, detail::concat("encoding images ", images.sizes()),
                      "lower the size, or use VAE tiling");
}

at::Tensor Pipeline::decode(const at::Tensor& latents) try {
  RECORD_USER_SCOPE("sd::vae_decode");
  c10::InferenceMode inference;
  ExecutionScope scope(impl_->execution);
  PrecisionScope precision(impl_->options.precision, impl_->options.autocast, impl_->device);
  auto& tiny = impl_->parts.vae_tiny;
  auto decode_one = [&](const torch::Tensor& z) {
    if (tiny) return tiny->decode(impl_->model_input(z / tiny->config.scaling_factor)).to(torch::kFloat);
    const auto x = impl_->model_input(z / impl_->parts.info.vae_scaling_factor);
    auto& vae = *impl_->parts.vae;
    return (impl_->tile(x.sizes(), false) ? decode_maybe_tiled(vae, x) : vae.decode(x)).to(torch::kFloat);
  };
  torch::Tensor image;
  if (impl_->options.vae_slicing && latents.size(0) > 1) {
    std::vector<torch::Tensor> parts;
    for (int64_t i = 0; i < latents.size(0); ++i) parts.push_back(decode_one(latents.narrow(0, i, 1)));
    image = torch::cat(parts);
  } else {
    image = decode_one(latents);
  }
  return (image / 2 + 0.5).clamp(0, 1).contiguous();
} catch (const std::exception& e) {
  if (!is_out_of_memory(e)) throw;
  impl_->forget_graphs();
  throw_out_of_memory(e, impl_->device, detail::concat("decoding latents ", latents.sizes()),
                      "lower the batch or size, or use VAE slicing or tiling, or the tiny autoencoder");
}

namespace {

// The request's image-to-image settings and output size, checked.
struct ResolvedRequest {
  int width = 0, height = 0;
  double strength = 1.0;
};

ResolvedRequest resolve_request(const GenerateOptions& o, const ModelInfo& info) {
  ResolvedRequest r;
  const bool from_image = o.init_image.has_value();
  const bool inpaint = o.mask.has_value();
  SD_CHECK(!inpaint || from_image, "a mask needs an init image (inpainting repaints part of one)");
  SD_CHECK(!o.strength || from_image, "strength applies to image-to-image and inpainting only (no init image given)");
  const int64_t extra = info.unet_in_channels - info.latent_channels;
  SD_CHECK(extra == 0 || inpaint, "this is an inpainting model (its UNet takes ", info.unet_in_channels,
           " input channels): give an init image and a mask");
  SD_CHECK(!from_image || info.has_vae_encoder,
           "image-to-image needs the VAE encoder: load the pipeline with LoadOptions::vae_encoder = true");
  r.strength = o.strength.value_or(inpaint ? 1.0 : 0.8);
  SD_CHECK(std::isfinite(r.strength) && r.strength >= 0.0 && r.strength <= 1.0, "strength must be in [0, 1], got ",
           r.strength);
  SD_CHECK(o.width >= 0 && o.height >= 0, "width and height must be positive (or 0 for the default), got ", o.width,
           "x", o.height);
  const int64_t f = info.vae_scale_factor;
  // diffusers asks for multiples of 8 whatever the VAE's factor; a deeper VAE needs its own factor.
  // Its image-to-image takes the image's size rounded down to the VAE's factor, unchecked.
  const int64_t multiple = std::max<int64_t>(8, f);
  r.width = o.width;
  r.height = o.height;
  if (from_image) {
    const Image& image = *o.init_image;
    SD_CHECK(image.width > 0 && image.height > 0 &&
                 image.rgb.size() == static_cast<size_t>(image.width) * image.height * 3,
             "init image: inconsistent size ", image.width, "x", image.height, " with ", image.rgb.size(), " bytes");
    if (o.mask) {
      const Image& mask = *o.mask;
      SD_CHECK(mask.width > 0 && mask.height > 0 &&
                   mask.rgb.size() == static_cast<size_t>(mask.width) * mask.height * 3,
               "mask: inconsistent size ", mask.width, "x", mask.height, " with ", mask.rgb.size(), " bytes");
    }
  }
  if (from_image && !inpaint) {
    const Size2D own = size_rounded_down(*o.init_image, f);
    if (r.width == 0) r.width = own.width;
    if (r.height == 0) r.height = own.height;
    SD_CHECK(r.width > 0 && r.height > 0, "init image ", o.init_image->width, "x", o.init_image->height,
             " is smaller than the VAE's factor ", f);
    const bool own_size = o.width == 0 && o.height == 0;
    if (own_size) return r;
  }
  if (r.width == 0) r.width = static_cast<int>(info.default_width);
  if (r.height == 0) r.height = static_cast<int>(info.default_height);
  SD_CHECK(r.width % multiple == 0 && r.height % multiple == 0, "width and height must be multiples of ", multiple,
           ", got ", r.width, "x", r.height);
  return r;
}

}  // namespace

MemoryEstimate Pipeline::estimate_memory(const GenerateOptions& options) const {
  SD_CHECK(options.batch >= 1, "batch must be at least 1, got ", options.batch);
  const ResolvedRequest request = resolve_request(options, impl_->parts.info);
  return impl_->estimate(options, options.batch, request.width, request.height);
}

// A function-try-block: out-of-memory anywhere in a generation becomes one sd::Error line, after
// every tensor of the failed call (and its execution settings) is released, so the pipeline serves
// the next call as if this one had not happened.
GenerateResult Pipeline::Impl::run(Pipeline& self, const std::vector<BatchPrompt>& items,
                                   const GenerateOptions& options) try {
  c10::InferenceMode inference;
  ExecutionScope scope(execution);
  Impl& s = *this;
  const ModelInfo& info = s.parts.info;
  const auto total_start = Clock::now();
  GenerateResult result;

  // 1. Check the request.
  const ResolvedRequest request = resolve_request(options, info);
  SD_CHECK(options.steps >= 1, "steps must be at least 1, got ", options.steps);
  SD_CHECK(options.batch >= 1, "batch must be at least 1, got ", options.batch);
  SD_CHECK(std::isfinite(options.guidance_scale) && options.guidance_scale >= 0.0,
           "guidance scale must be a finite number >= 0 (<= 1: no guidance), got ", options.guidance_scale);
  SD_CHECK(std::isfinite(options.eta) && options.eta >= 0.0 && options.eta <= 1.0, "eta must be in [0, 1], got ",
           options.eta);
  SD_CHECK(options.steps <= s.parts.scheduler_config.num_train_timesteps, "steps must be at most the schedule's ",
           s.parts.scheduler_config.num_train_timesteps, " training steps (num_train_timesteps), got ", options.steps);
  SD_CHECK(options.clip_skip >= 0, "clip_skip must be 0 (last layer) or positive, got ", options.clip_skip);
  SD_CHECK(options.preview_every >= 0, "preview_every must be >= 0 (0: no previews), got ", options.preview_every);
  const int64_t n = static_cast<int64_t>(items.size());
  SD_CHECK(n >= 1, "no prompts given");
  s.check_memory(options, n * options.batch, request.width, request.height);
  const int64_t f = info.vae_scale_factor;
  result.width = request.width;
  result.height = request.height;
  SD_CHECK(n == 1 || (!options.initial_latents.defined() && !options.init_image),
           "several prompts at once: text-to-image only (no initial latents or init image)");
  const std::vector<int64_t> item_shape{options.batch, info.latent_channels, request.height / f, request.width / f};
  const std::vector<int64_t> latent_shape{n * options.batch, item_shape[1], item_shape[2], item_shape[3]};

  // 2. A fresh scheduler (PNDM keeps history between steps). Image-to-image runs the schedule's
  //    tail: the last int(steps * strength) inference steps (diffusers' get_timesteps).
  const SchedulerKind kind = options.scheduler ? *options.scheduler : scheduler_kind_from_config(s.parts.scheduler_config);
  SchedulerOptions scheduler_options;
  scheduler_options.eta = options.eta;
  auto scheduler = make_scheduler(kind, s.parts.scheduler_config, scheduler_options);
  scheduler->set_timesteps(options.steps);
  int64_t begin = 0;
  if (options.init_image) {
    const int init_steps = std::min(static_cast<int>(options.steps * request.strength), options.steps);
    const int t_start = std::max(options.steps - init_steps, 0);
    SD_CHECK(options.steps - t_start >= 1, "strength ", request.strength, " with ", options.steps,
             " steps runs no step (int(steps * strength) = 0): raise the strength or the steps");
    begin = static_cast<int64_t>(t_start) * scheduler->order();
    scheduler->set_begin_index(begin);
  }
  const auto timesteps = scheduler->timesteps().slice(0, begin);
  result.timesteps = timesteps;
  result.first_step = static_cast<int>(begin);
  if (options.init_image) result.strength = request.strength;

  // 3. Prompt embeddings (tokenizing is part of the text-encoder time: it is negligible).
  const bool guidance = options.guidance_scale > 1.0;
  auto stage_start = Clock::now();
  PromptEmbeddings embeddings;
  if (n == 1) {
    embeddings = self.encode_prompt(items[0].prompt, items[0].negative_prompt, options.batch, guidance,
                                    options.clip_skip);
  } else {
    // Each item encoded as it would be alone (same text-encoder batch, same kernels), then laid out
    // [negatives..., prompts...]: the [uncond, cond] halves predict_noise splits.
    std::vector<torch::Tensor> negatives, positives;
    for (const BatchPrompt& item : items) {
      const PromptEmbeddings one =
          self.encode_prompt(item.prompt, item.negative_prompt, options.batch, guidance, options.clip_skip);
      embeddings.truncated_tokens = std::max(embeddings.truncated_tokens, one.truncated_tokens);
      if (guidance) negatives.push_back(one.embeddings.narrow(0, 0, options.batch));
      positives.push_back(one.embeddings.narrow(0, guidance ? options.batch : 0, options.batch));
    }
    negatives.insert(negatives.end(), positives.begin(), positives.end());
    embeddings.embeddings = torch::cat(negatives);
    embeddings.batch = static_cast<int>(n * options.batch);
    embeddings.guided = guidance;
  }
  result.timings.text_encoder_s = s.seconds_since(stage_start);
  result.truncated_tokens = embeddings.truncated_tokens;

  // 4. Initial latents: one CPU generator per generation, seeded like
  //    torch.Generator("cpu").manual_seed(seed); it later feeds the scheduler's noise too.
  //    With several items, one generator each, drawn in item order.
  std::vector<at::Generator> generators;
  for (const BatchPrompt& item : items) generators.push_back(at::detail::createCPUGenerator(item.seed));
  at::Generator& generator = generators.front();
  const auto fp32 = torch::TensorOptions().dtype(torch::kFloat);
  auto draw_noise = [&] {
    std::vector<torch::Tensor> drawn;
    for (auto& g : generators) drawn.push_back(torch::randn(item_shape, g, fp32));
    return n == 1 ? drawn.front() : torch::cat(drawn);
  };
  torch::Tensor latents;
  ImageStart image_start;
  if (options.init_image) {
    stage_start = Clock::now();
    image_start = prepare_image_start(self, options, request.strength, *scheduler, begin, request.width,
                                      request.height, generator, s.device);
    result.timings.encode_s = s.seconds_since(stage_start);
    latents = image_start.latents;
  } else {
    if (options.initial_latents.defined()) {
      SD_CHECK(options.initial_latents.sizes().vec() == latent_shape, "initial latents must be ",
               c10::IntArrayRef(latent_shape), ", got ", options.initial_latents.sizes());
      latents = options.initial_latents.to(s.device, torch::kFloat);
    } else {
      latents = host_to_device(draw_noise(), s.device);
    }
    latents = latents * scheduler->init_noise_sigma();
  }
  result.init_latents = latents;

  // 5. Denoising loop (i counts the steps run; the scheduler's index is begin + i).
  StepNoise step_noise;
  if (n == 1) step_noise.generator = &generator;
  const int count = static_cast<int>(timesteps.size(0));
  const auto denoise_start = Clock::now();
  // Per-step times without waiting for the device at each step (CUDA events; interval_timer.h).
  const auto unet_timer = make_interval_timer(s.device);
  const auto scheduler_timer = make_interval_timer(s.device);
  for (int i = 0; i < count; ++i) {
    const int64_t index = begin + i;
    const auto t = timesteps[i];
    unet_timer->begin();
    auto scaled = scheduler->scale_model_input(latents, index);
    auto noise_pred = self.predict_noise(scaled, t, embeddings, options.guidance_scale, image_start.conditioning);
    unet_timer->end();
    result.cuda_graph = result.cuda_graph || s.unet_replayed;
    scheduler_timer->begin();
    // Several items: each item's step noise from its own generator, as its own generate() draws it.
    if (n > 1 && scheduler->needs_noise()) step_noise.noise = draw_noise();
    latents = scheduler->step(noise_pred, index, latents, step_noise);
    if (image_start.image_latents.defined()) {
      // Inpainting with an ordinary UNet: outside the mask, the original at the next step's noise level.
      auto original = image_start.image_latents;
      if (i + 1 < count) original = scheduler->add_noise(image_start.image_latents, image_start.noise, index + 1);
      latents = (1 - image_start.mask) * original + image_start.mask * latents;
    }
    scheduler_timer->end();
    if (options.keep_step_latents) result.step_latents.push_back(latents.to(torch::kCPU));
    if (options.on_step) {
      StepInfo step{i, count, t.item<double>(), latents, {}};
      if (options.preview_every > 0 && (i + 1) % options.preview_every == 0) {
        const auto preview_start = Clock::now();
        step.preview = s.preview(self, latents);
        result.timings.preview_s += s.seconds_since(preview_start);
      }
      if (options.on_step(step) == StepAction::kStop) {
        result.stopped = true;
        break;
      }
    }
  }
  result.timings.denoise_s = s.seconds_since(denoise_start);
  result.timings.unet_s = unet_timer->seconds();
  result.timings.scheduler_s = scheduler_timer->seconds();
  result.latents = latents;

  // 6. Decode.
  if (options.decode) {
    stage_start = Clock::now();
    result.images01 = self.decode(latents);
    result.timings.decode_s = s.seconds_since(stage_start);
    result.images = to_images(result.images01);
  }
  result.timings.total_s = s.seconds_since(total_start);
  return result;
} catch (const std::exception& e) {
  if (!is_out_of_memory(e)) throw;
  forget_graphs();
  const std::string size = options.width > 0 && options.height > 0
                               ? detail::concat(options.width, "x", options.height)
                               : std::string("the default size");
  throw_out_of_memory(e, device, detail::concat("generating ", size, ", batch ", options.batch),
                      "lower the size or batch, or use attention slicing, VAE tiling or slicing; memory_limit refuses "
                      "such requests up front");
}


torch::Tensor Pipeline::Impl::preview(Pipeline& self, const torch::Tensor& latents) {
  RECORD_USER_SCOPE("sd::preview_decode");
  AutoencoderTiny& tiny = parts.preview_tiny;
  if (!tiny) return self.decode(latents).to(torch::kCPU);
  PrecisionScope precision(options.precision, options.autocast, device);
  const auto image = tiny->decode(model_input(latents / tiny->config.scaling_factor)).to(torch::kFloat);
  return (image / 2 + 0.5).clamp(0, 1).to(torch::kCPU).contiguous();
}

GenerateResult Pipeline::generate(const std::string& prompt, const GenerateOptions& options) {
  return impl_->run(*this, {BatchPrompt{prompt, options.negative_prompt, options.seed}}, options);
}

GenerateResult Pipeline::generate_batch(const std::vector<BatchPrompt>& items, const GenerateOptions& options) {
  SD_CHECK(!items.empty(), "generate_batch: no prompts given");
  SD_CHECK(options.batch == 1, "generate_batch: options.batch must be 1 (one image per item), got ", options.batch);
  SD_CHECK(options.negative_prompt.empty(), "generate_batch: give negative prompts per item, not in options");
  SD_CHECK(options.seed == 0, "generate_batch: give seeds per item, not in options");
  SD_CHECK(!options.initial_latents.defined() && !options.init_image && !options.mask && !options.strength,
           "generate_batch: text-to-image only (no initial latents, init image, mask or strength)");
  return impl_->run(*this, items, options);
}

}  // namespace sd
