#pragma once
// Diffusion schedulers: the sampling loops of diffusers 0.27 (PNDM/PLMS, DDIM, Euler, Euler ancestral,
// DPM-Solver++ 2M with and without Karras sigmas, LMS), numerically matched to it in float32.
//
// Use: make_scheduler(kind, config) -> set_timesteps(n) -> latents *= init_noise_sigma() ->
// for i in [0, timesteps().size(0)): model input = scale_model_input(latents, i), model output at
// timesteps()[i], latents = step(output, i, latents). Create one scheduler per generation: the
// multistep ones keep the previous model outputs. Image-to-image starts at a later index k:
// set_begin_index(k), latents = add_noise(image_latents, noise, k), then steps k, k+1, ...
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sd/export.h"

namespace sd {

// scheduler/scheduler_config.json. A default-constructed config holds SD 1.5's values. from_json_*
// gives a missing field diffusers' default (beta_start 0.0001, beta_end 0.02, "linear", steps_offset
// 0, ...), and a field named in the file's "_use_default_values" counts as missing, as in diffusers'
// from_config. Two defaults depend on the class in diffusers and keep SD's values here:
// set_alpha_to_one (DDIM's default is true) and clip_sample (DDIM's default is true); every SD
// config states both. An explicit "timestep_spacing" applies to every scheduler made from the
// config (a config saved by diffusers >= 0.20 states "leading", so Euler/LMS/DPM then use it too).
struct SD_API SchedulerConfig {
  std::string class_name;  // "_class_name", e.g. "PNDMScheduler"
  int num_train_timesteps = 1000;
  double beta_start = 0.00085, beta_end = 0.012;
  std::string beta_schedule = "scaled_linear";  // "linear", "scaled_linear", "squaredcos_cap_v2"
  std::vector<double> trained_betas;            // non-empty: used instead of beta_schedule
  int steps_offset = 1;
  bool set_alpha_to_one = false, skip_prk_steps = true, clip_sample = false;
  double clip_sample_range = 1.0;
  std::string prediction_type = "epsilon";  // "epsilon", "v_prediction", "sample"
  // "" = the scheduler's own default: "leading" for PNDM and DDIM, "linspace" for the others.
  std::string timestep_spacing;
  bool use_karras_sigmas = false;  // Euler, LMS, DPM-Solver (the -karras kind forces it on)
  // DPM-Solver multistep.
  std::string solver_type = "midpoint";  // "midpoint" or "heun"
  bool lower_order_final = true;
  bool euler_at_final = false;
  std::string final_sigmas_type = "zero";  // "zero" or "sigma_min"
  double lambda_min_clipped = -std::numeric_limits<double>::infinity();  // -inf: no clipping
  // Euler.
  std::string interpolation_type = "linear";

  static SchedulerConfig from_json_file(const std::filesystem::path& path);  // errors name the file and field
  static SchedulerConfig from_json_text(const std::string& text, const std::string& origin);
};

enum class SchedulerKind { kPNDM, kDDIM, kEuler, kEulerAncestral, kDPMSolverMultistep, kDPMSolverMultistepKarras, kLMS };

// "pndm", "ddim", "euler", "euler-a", "dpm++2m", "dpm++2m-karras", "lms"; anything else -> sd::Error listing them.
SD_API SchedulerKind scheduler_kind_from_name(std::string_view name);
SD_API std::string scheduler_name(SchedulerKind kind);
// Every kind, in the order of the enum.
SD_API std::vector<SchedulerKind> all_scheduler_kinds();
// From config.class_name ("PNDMScheduler", "DPMSolverMultistepScheduler" with use_karras_sigmas -> -karras, ...).
SD_API SchedulerKind scheduler_kind_from_config(const SchedulerConfig& config);

// Noise for stochastic steps (DDIM with eta > 0, Euler ancestral).
struct StepNoise {
  // A CPU generator: noise is drawn as randn(shape, *generator) in float32 on the CPU, then moved to
  // the sample's device (diffusers' order, so a seed gives the same images on every device).
  at::Generator* generator = nullptr;
  at::Tensor noise;  // if defined, used instead of drawing (shape of the sample)
};

struct SchedulerOptions {
  double eta = 0.0;  // DDIM only: 0 = deterministic DDIM
};

class SD_API Scheduler {
 public:
  virtual ~Scheduler() = default;
  // Computes the schedule for `num_inference_steps` (>= 1) and resets the multistep history.
  virtual void set_timesteps(int num_inference_steps) = 0;
  // One entry per step() call, in order (PNDM with skip_prk_steps: N+1 entries, one repeated).
  // int64 for PNDM/DDIM/DPM-Solver, float32 for Euler/Euler ancestral/LMS, as diffusers has them.
  virtual at::Tensor timesteps() const = 0;
  // The sigmas (float32, one more than timesteps) for the sigma-based schedulers; undefined otherwise.
  virtual at::Tensor sigmas() const { return {}; }
  // The factor for the initial noise: latents = randn * init_noise_sigma().
  virtual double init_noise_sigma() const = 0;
  // The model input for step `step_index`: identity unless the scheduler scales it (Euler, LMS).
  virtual at::Tensor scale_model_input(const at::Tensor& sample, int64_t step_index) const;
  // The sample for the next step, from the model output at timesteps()[step_index]. Steps must be
  // taken in order, starting at 0, after set_timesteps().
  virtual at::Tensor step(const at::Tensor& model_output, int64_t step_index, const at::Tensor& sample,
                          const StepNoise& noise = {}) = 0;
  // True if step() draws noise (then StepNoise must carry a generator or a noise tensor).
  virtual bool needs_noise() const { return false; }
  // Image-to-image: the first step() after this is `step_index`, not 0 (diffusers' set_begin_index;
  // the multistep history starts empty there, as in diffusers). Call after set_timesteps().
  virtual void set_begin_index(int64_t step_index) = 0;
  // `original` noised to the level of timesteps()[step_index]: diffusers' add_noise, i.e.
  // sqrt(a) * x + sqrt(1 - a) * noise with the cumulative alpha of that timestep (PNDM, DDIM),
  // x + sigma * noise (Euler, Euler ancestral, LMS), alpha_t * x + sigma_t * noise (DPM-Solver).
  // float32. step_index may be timesteps().size(0) - 1 at most.
  virtual at::Tensor add_noise(const at::Tensor& original, const at::Tensor& noise, int64_t step_index) const = 0;
  // diffusers' Scheduler.order: step() calls per inference step. 1 for every scheduler libsd has
  // (DPM-Solver's solver_order is something else); image-to-image skips t_start * order entries.
  virtual int order() const { return 1; }
  virtual SchedulerKind kind() const = 0;
};

SD_API std::unique_ptr<Scheduler> make_scheduler(SchedulerKind kind, const SchedulerConfig& config,
                                                 const SchedulerOptions& options = {});

}  // namespace sd
