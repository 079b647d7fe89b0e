#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "cli_checks.h"
#include "commands.h"
#include "sd/atomic_file.h"
#include "sd/error.h"
#include "sd/log.h"
#include "sd/pipeline.h"
#include "sd/safetensors.h"
#include "sd/sha256.h"

namespace sd_cli {
namespace {

struct GenerateArgs {
  std::string model = "random:sd-v1-5", prompt, negative_prompt, scheduler, device = "cpu", precision = "fp32";
  std::string output = "out.png", init_latents, save_latents, config_dir, variant, init_image, mask;
  int steps = 50, height = 0, width = 0, batch = 1, threads = 0, clip_skip = 0;
  double guidance = 7.5, eta = 0.0;
  std::optional<double> strength;
  std::string vae_tiling = "off", vae_tiny, vae;
  std::string preview, preview_vae_tiny;  // --preview PNG, rewritten every --preview-every steps
  int preview_every = 5;
  int64_t vae_memory_limit_mib = 0;
  int64_t memory_limit_mib = 0;
  uint64_t seed = 0;
  bool autocast = false, quiet = false, no_channels_last = false, no_cuda_graphs = false;
  int64_t prepack_max_pixels = -1;
  int64_t attention_slice = 0;
  std::vector<std::string> loras;  // FILE[:SCALE]
  bool lora_lenient = false;
};

// out.png with batch 3 -> out-0.png, out-1.png, out-2.png
std::filesystem::path indexed(const std::filesystem::path& path, int index, int count) {
  if (count == 1) return path;
  auto p = path;
  p.replace_filename(path.stem().string() + "-" + std::to_string(index) + path.extension().string());
  return p;
}

class ProgressBar {
 public:
  explicit ProgressBar(bool enabled) : enabled_(enabled), start_(std::chrono::steady_clock::now()) {}
  void update(int done, int total) {
    if (!enabled_) return;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double rate = done > 0 ? done / elapsed : 0.0;
    const double eta = rate > 0 ? (total - done) / rate : 0.0;
    const int width = 30, filled = total > 0 ? done * width / total : 0;
    std::fprintf(stderr, "\r[%.*s%*s] %d/%d  %.2f it/s  ETA %.0fs ", filled, "==============================",
                 width - filled, "", done, total, rate, eta);
    if (done == total) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }

 private:
  bool enabled_;
  std::chrono::steady_clock::time_point start_;
};

// Usage errors (exit code 2) rather than runtime errors: what the command line alone gets wrong.
const CLI::Validator kMultipleOf8 = sd_cli_checks::positive_multiple_of_8();
const CLI::Validator kFinite = sd_cli_checks::finite();
const CLI::Validator kSeed = sd_cli_checks::seed();

}  // namespace

Run add_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  app.add_option("--model", a->model, "diffusers folder, single-file .safetensors, or random:sd-v1-5")->capture_default_str();
  app.add_option("--prompt", a->prompt, "what to draw")->required();
  app.add_option("--negative-prompt", a->negative_prompt, "what to avoid (used with guidance > 1)");
  app.add_option("--steps", a->steps, "denoising steps")->capture_default_str()->check(CLI::Range(1, 10000));
  app.add_option("--guidance", a->guidance, "classifier-free guidance scale (<= 1: none)")->capture_default_str()
      ->check(sd_cli_checks::finite_non_negative());
  app.add_option("--scheduler", a->scheduler, "pndm, ddim, euler, euler-a, dpm++2m, dpm++2m-karras, lms (default: the model's)");
  app.add_option("--seed", a->seed, "seed of the CPU generator, 0 to 2^64-1")->capture_default_str()->transform(kSeed);
  app.add_option("--height", a->height, "image height, a multiple of 8 (default: the model's, 512 for SD 1.5; "
                 "with --init-image alone: the image's)")->check(kMultipleOf8);
  app.add_option("--width", a->width, "image width, a multiple of 8 (default: as --height)")->check(kMultipleOf8);
  auto* init_image = app.add_option("--init-image", a->init_image,
                                    "image-to-image: start from this PNG or JPEG (resized to --width x --height if given)");
  app.add_option("--strength", a->strength,
                 "with --init-image: the share of the steps run from the image, in [0, 1] "
                 "(default 0.8; with --mask 1.0)")
      ->check(kFinite & CLI::Range(0.0, 1.0))
      ->needs(init_image);
  app.add_option("--mask", a->mask, "inpainting: repaint where this PNG/JPEG is white, keep where black")
      ->needs(init_image);
  app.add_option("--batch", a->batch, "images per prompt")->capture_default_str()->check(CLI::Range(1, 4096));
  app.add_option("--device", a->device, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--precision", a->precision, "fp32, tf32, fp16 or bf16")->capture_default_str()
      ->check(CLI::IsMember({"fp32", "tf32", "fp16", "bf16"}));
  app.add_flag("--autocast", a->autocast, "fp32 weights with autocast (fp16 on CUDA, bf16 on CPU)");
  app.add_option("--eta", a->eta, "DDIM eta (0 = deterministic)")->capture_default_str()->check(kFinite & CLI::Range(0.0, 1.0));
  app.add_option("--clip-skip", a->clip_skip, "1: condition on the penultimate CLIP layer")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--init-latents", a->init_latents, "safetensors file with a tensor 'latents' [batch, C, H/f, W/f]");
  app.add_option("--save-latents", a->save_latents, "write init, step_0..step_N-1 and final latents to this safetensors file");
  app.add_option("--threads", a->threads, "CPU threads (0: all cores)")->capture_default_str()->check(CLI::Range(0, 4096));
  app.add_option("--config-dir", a->config_dir, "configs + tokenizer for a single-file checkpoint (default: bundled SD 1.5)");
  app.add_option("--variant", a->variant, "weights variant of a diffusers folder, e.g. fp16");
  app.add_option("--attention-slice", a->attention_slice, "attention in query slices of this many rows (bounds memory)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--no-channels-last", a->no_channels_last, "keep the default contiguous memory format");
  app.add_flag("--no-cuda-graphs", a->no_cuda_graphs,
               "CUDA: run the UNet eagerly instead of replaying a captured CUDA graph (no effect on the CPU)");
  app.add_option("--vae-tiling", a->vae_tiling,
                 "VAE in overlapping tiles (diffusers' enable_tiling): on, off, or auto (where the untiled decode "
                 "would exceed --vae-memory-limit-mib)")
      ->capture_default_str()
      ->check(CLI::IsMember({"off", "on", "auto"}));
  app.add_option("--vae-memory-limit-mib", a->vae_memory_limit_mib,
                 "--vae-tiling auto: the decoder's memory limit in MiB (0: the system's available memory)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  app.add_option("--vae-tiny", a->vae_tiny,
                 "decode (and encode) with the tiny autoencoder TAESD: a diffusers AutoencoderTiny folder, "
                 "taesd_decoder.safetensors, or random:taesd");
  app.add_option("--vae", a->vae,
                 "a VAE replacing the model's: a diffusers VAE folder, or a .safetensors VAE file with LDM "
                 "(vae-ft-mse style) or diffusers names that fits the model's vae/config.json");
  auto* preview = app.add_option("--preview", a->preview,
                                 "rewrite this PNG (atomically) with a preview of the first image every "
                                 "--preview-every steps, to watch a long run");
  app.add_option("--preview-every", a->preview_every, "steps between previews")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000))
      ->needs(preview);
  app.add_option("--preview-vae-tiny", a->preview_vae_tiny,
                 "decode the previews with this tiny autoencoder (as --vae-tiny; random:taesd for timing) while "
                 "the model's VAE makes the image; default: the image's decoder (slow with the full VAE)")
      ->needs(preview);
  app.add_option("--prepack-max-pixels", a->prepack_max_pixels,
                 "CPU: convolutions on inputs of at most this many pixels keep a weight copy reordered for oneDNN; "
                 "-1 = libsd's choice per precision, 0 = off (less memory)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{-1}, std::numeric_limits<int64_t>::max()));
  app.add_option("--memory-limit-mib", a->memory_limit_mib,
                 "refuse a generation whose largest stage is estimated above this many MiB (0: the memory "
                 "available; -1: never refuse)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{-1}, int64_t{1} << 40));
  app.add_option("--lora", a->loras, "LoRA FILE[:SCALE] (default scale 1) merged into the UNet and text encoder; repeatable");
  app.add_flag("--lora-lenient", a->lora_lenient, "skip (and report) LoRA keys that match no layer instead of failing");
  app.add_option("--output,-o", a->output, "PNG to write (batch > 1: out-0.png, out-1.png, ...)")->capture_default_str();
  app.add_flag("--quiet,-q", a->quiet, "no progress bar");

  return [a] {
    if (a->quiet) sd::set_log_level(sd::LogLevel::kWarn);
    sd::LoadOptions load;
    load.device = a->device;
    load.precision = sd::precision_from_name(a->precision);
    load.autocast = a->autocast;
    load.threads = a->threads;
    load.config_dir = a->config_dir;
    load.variant = a->variant;
    load.attention_slice = a->attention_slice;
    load.channels_last = !a->no_channels_last;
    load.cuda_graphs = !a->no_cuda_graphs;
    load.prepack_max_pixels = a->prepack_max_pixels;
    load.vae_encoder = !a->init_image.empty();
    load.vae_tiling = a->vae_tiling == "on" ? sd::VaeTiling::kOn : a->vae_tiling == "auto" ? sd::VaeTiling::kAuto
                                                                                           : sd::VaeTiling::kOff;
    load.vae_memory_limit = a->vae_memory_limit_mib * (int64_t{1} << 20);
    load.vae_tiny = a->vae_tiny;
    load.preview_vae_tiny = a->preview_vae_tiny;
    load.vae = a->vae;
    load.memory_limit = a->memory_limit_mib > 0 ? a->memory_limit_mib * (int64_t{1} << 20) : a->memory_limit_mib;
    // LoRA files are hashed before the model loads: a missing file fails in a second.
    nlohmann::json loras = nlohmann::json::array();
    for (const std::string& text : a->loras) {
      sd::LoraSpec spec = sd::parse_lora_spec(text);
      loras.push_back({{"path", spec.path.string()}, {"sha256", sd::sha256_file_hex(spec.path)}, {"scale", spec.scale}});
      load.loras.push_back(std::move(spec));
    }
    load.lora_lenient = a->lora_lenient;

    sd::GenerateOptions opt;
    opt.negative_prompt = a->negative_prompt;
    opt.steps = a->steps;
    opt.guidance_scale = a->guidance;
    opt.seed = a->seed;
    opt.height = a->height;
    opt.width = a->width;
    opt.batch = a->batch;
    opt.eta = a->eta;
    opt.clip_skip = a->clip_skip;
    if (!a->scheduler.empty()) opt.scheduler = sd::scheduler_kind_from_name(a->scheduler);
    if (!a->init_latents.empty()) {
      sd::SafetensorsFile file(a->init_latents);
      SD_CHECK(file.contains("latents"), a->init_latents, ": no tensor named 'latents'");
      opt.initial_latents = file.get("latents").to(torch::kFloat).clone();
    }
    opt.keep_step_latents = !a->save_latents.empty();
    // Read the images before the model: a bad file fails in a second, not after the load.
    nlohmann::json inputs = nlohmann::json::object();
    auto read_input = [&inputs](const std::string& path, const char* key) {
      sd::Image image = sd::read_image(path);
      inputs[key] = {{"path", path}, {"sha256", sd::sha256_file_hex(path)}, {"width", image.width},
                     {"height", image.height}};
      return image;
    };
    if (!a->init_image.empty()) opt.init_image = read_input(a->init_image, "init_image");
    if (!a->mask.empty()) opt.mask = read_input(a->mask, "mask");
    opt.strength = a->strength;

    // Fail on an unwritable output before spending minutes on the model.
    const auto out_dir = std::filesystem::absolute(a->output).parent_path();
    SD_CHECK(std::filesystem::is_directory(out_dir), a->output, ": the folder ", out_dir.string(), " does not exist");
    if (!a->preview.empty()) {
      const auto preview_dir = std::filesystem::absolute(a->preview).parent_path();
      SD_CHECK(std::filesystem::is_directory(preview_dir), a->preview, ": the folder ", preview_dir.string(),
               " does not exist");
    }

    auto pipe = sd::Pipeline::load(a->model, load);
    // What the command line gets wrong about this model is still a usage error.
    const int train_steps = pipe.scheduler_config().num_train_timesteps;
    if (a->steps > train_steps) {
      throw UsageError("--steps " + std::to_string(a->steps) + " is more than the model's schedule has (" +
                       std::to_string(train_steps) + " training steps)");
    }
    ProgressBar bar(!a->quiet && ::isatty(STDERR_FILENO));
    if (!a->preview.empty()) opt.preview_every = a->preview_every;
    opt.on_step = [&bar, &a](const sd::StepInfo& step) {
      if (step.preview.defined()) sd::write_png(a->preview, sd::to_images(step.preview.narrow(0, 0, 1)).front());
      bar.update(step.index + 1, step.count);
      return sd::StepAction::kContinue;
    };
    // A truncated prompt is warned about once, by the library (and recorded in the sidecar).
    auto result = pipe.generate(a->prompt, opt);

    if (!a->save_latents.empty()) {
      sd::NamedTensors tensors;
      tensors.emplace_back("init", result.init_latents.to(torch::kCPU));
      for (size_t i = 0; i < result.step_latents.size(); ++i) {
        tensors.emplace_back("step_" + std::to_string(i), result.step_latents[i]);
      }
      tensors.emplace_back("final", result.latents.to(torch::kCPU));
      tensors.emplace_back("timesteps", result.timesteps.to(torch::kCPU));
      sd::save_safetensors(a->save_latents, tensors, {{"prompt", a->prompt}, {"seed", std::to_string(a->seed)}});
    }

    nlohmann::json sidecar = {
        {"prompt", a->prompt}, {"negative_prompt", a->negative_prompt}, {"seed", a->seed}, {"steps", a->steps},
        {"scheduler", sd::scheduler_name(opt.scheduler ? *opt.scheduler : sd::scheduler_kind_from_config(pipe.scheduler_config()))},
        {"guidance_scale", a->guidance}, {"height", result.height}, {"width", result.width}, {"batch", a->batch},
        {"precision", a->precision}, {"autocast", a->autocast}, {"device", a->device}, {"model", a->model},
        {"eta", a->eta}, {"clip_skip", a->clip_skip}, {"decoder", pipe.info().decoder},
        {"vae", pipe.info().vae_source},
        {"vae_tiling", a->vae_tiling},
        {"timings_s",
         {{"load", pipe.info().load_s},
          {"text_encoder", result.timings.text_encoder_s},
          {"vae_encode", result.timings.encode_s},
          {"denoise", result.timings.denoise_s},
          {"decode", result.timings.decode_s},
          {"total", result.timings.total_s},
          {"unet_evals", result.timings.unet_s}}}};
    nlohmann::json files = nlohmann::json::array();
    for (size_t i = 0; i < result.images.size(); ++i) {
      const auto path = indexed(a->output, static_cast<int>(i), static_cast<int>(result.images.size()));
      sd::write_png(path, result.images[i]);
      files.push_back(path.string());
    }
    sidecar["images"] = files;
    if (!loras.empty()) {
      sidecar["loras"] = loras;
      sidecar["lora_skipped_keys"] = pipe.lora_report().skipped;
      sidecar["timings_s"]["lora_merge"] = pipe.lora_report().seconds;
    }
    sidecar["truncated_tokens"] = result.truncated_tokens;
    sidecar["cuda_graph"] = result.cuda_graph;  // whether the UNet replayed a CUDA graph
    if (!a->preview.empty()) {
      sidecar["preview"] = {{"path", a->preview}, {"every", a->preview_every},
                            {"decoder", pipe.info().preview_decoder}};
      sidecar["timings_s"]["preview"] = result.timings.preview_s;
    }
    if (opt.init_image) {
      sidecar["mode"] = opt.mask ? "inpaint" : "img2img";
      sidecar["strength"] = result.strength;
      sidecar["first_step"] = result.first_step;
      for (auto& [key, value] : inputs.items()) sidecar[key] = value;
    } else {
      sidecar["mode"] = "txt2img";
    }
    auto json_path = std::filesystem::path(a->output).replace_extension(".json");
    sd::write_file_atomic(json_path, sidecar.dump(2) + "\n");
    if (!a->quiet) {
      std::fprintf(stderr, "wrote %s (%zu image%s) in %.1f s: text %.2f s, denoise %.1f s (%zu UNet evaluations), decode %.1f s\n",
                   a->output.c_str(), result.images.size(), result.images.size() == 1 ? "" : "s",
                   result.timings.total_s, result.timings.text_encoder_s, result.timings.denoise_s,
                   result.timings.unet_s.size(), result.timings.decode_s);
    }
    return 0;
  };
}

}  // namespace sd_cli
