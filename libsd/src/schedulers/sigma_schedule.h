#pragma once
// The inference schedule of the k-diffusion style schedulers (Euler, Euler ancestral, LMS):
// fractional float32 timesteps and the float32 sigmas interpolated at them, plus a final 0.
#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "sd/scheduler.h"

namespace sd::sched {

struct SigmaSchedule {
  std::vector<float> timesteps;  // num_inference_steps values, descending
  std::vector<float> sigmas;     // timesteps.size() + 1 values, the last 0
  std::string spacing;           // the resolved timestep_spacing
};

// diffusers' set_timesteps of EulerDiscrete/EulerAncestralDiscrete/LMSDiscrete (default spacing
// "linspace"); `karras` replaces the sigmas by Karras et al.'s and the timesteps by their inverse.
SigmaSchedule make_sigma_schedule(const SchedulerConfig& config, const std::vector<float>& alphas_cumprod,
                                  int num_inference_steps, bool karras);

// init_noise_sigma: the largest sigma, or sqrt(max^2 + 1) for "leading" spacing (diffusers' rule).
double sigma_init_noise(const SigmaSchedule& schedule);

// x0 predicted from a model output at noise level sigma (epsilon, v_prediction or sample), float32.
at::Tensor sigma_pred_original(const std::string& prediction_type, const at::Tensor& model_output,
                               const at::Tensor& sample, float sigma);

// sample / sqrt(sigma^2 + 1): the model input of a sigma-parameterized scheduler.
at::Tensor sigma_scale_input(const at::Tensor& sample, float sigma);

// original + noise * sigma: add_noise of Euler, Euler ancestral and LMS, float32.
at::Tensor sigma_add_noise(const at::Tensor& original, const at::Tensor& noise, float sigma);

}  // namespace sd::sched
