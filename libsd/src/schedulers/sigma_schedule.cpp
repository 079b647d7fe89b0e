#include "schedulers/sigma_schedule.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "schedulers/schedule_math.h"
#include "sd/error.h"

namespace sd::sched {

SigmaSchedule make_sigma_schedule(const SchedulerConfig& config, const std::vector<float>& alphas_cumprod,
                                  int num_inference_steps, bool karras) {
  SD_CHECK(num_inference_steps >= 1, "set_timesteps: num_inference_steps must be at least 1, got ",
           num_inference_steps);
  const int n = num_inference_steps;
  const int train = config.num_train_timesteps;
  SigmaSchedule s;
  s.spacing = resolved_spacing(config, "linspace");
  // numpy builds these in float64 and casts to float32; offsets are added in float32.
  std::vector<float> ts;
  if (s.spacing == "linspace") {
    for (double v : np_linspace(0, train - 1, n)) ts.push_back(static_cast<float>(v));
    std::reverse(ts.begin(), ts.end());
  } else if (s.spacing == "leading") {
    const int ratio = train / n;
    for (int i = n - 1; i >= 0; --i) ts.push_back(static_cast<float>(i * ratio) + static_cast<float>(config.steps_offset));
  } else {  // trailing
    for (double v : np_arange(train, 0, -static_cast<double>(train) / n)) ts.push_back(static_cast<float>(np_round(v)) - 1.0f);
  }

  const std::vector<float> train_sig = train_sigmas(alphas_cumprod);
  std::vector<double> x(ts.begin(), ts.end());
  std::vector<double> sigmas = np_interp_unit_grid(x, train_sig);
  if (karras) {
    std::vector<float> log_sigmas(train_sig.size());
    for (size_t i = 0; i < train_sig.size(); ++i) log_sigmas[i] = std::log(train_sig[i]);
    sigmas = karras_sigmas(sigmas.back(), sigmas.front(), n);
    ts.clear();
    for (double sigma : sigmas) ts.push_back(static_cast<float>(sigma_to_t(sigma, log_sigmas)));
  }
  s.timesteps = ts;
  for (double v : sigmas) s.sigmas.push_back(static_cast<float>(v));
  s.sigmas.push_back(0.0f);
  return s;
}

double sigma_init_noise(const SigmaSchedule& schedule) {
  SD_CHECK(!schedule.sigmas.empty(), "init_noise_sigma: call set_timesteps() first");
  const float max_sigma = *std::max_element(schedule.sigmas.begin(), schedule.sigmas.end());
  if (schedule.spacing == "linspace" || schedule.spacing == "trailing") return max_sigma;
  return std::sqrt(max_sigma * max_sigma + 1.0f);
}

at::Tensor sigma_pred_original(const std::string& prediction_type, const at::Tensor& model_output,
                               const at::Tensor& sample, float sigma) {
  if (prediction_type == "epsilon") return sample - model_output * sigma;
  if (prediction_type == "v_prediction") {
    const float s2p1 = sigma * sigma + 1.0f;
    return model_output * (-sigma / std::sqrt(s2p1)) + sample / s2p1;
  }
  return model_output;  // "sample"
}

at::Tensor sigma_scale_input(const at::Tensor& sample, float sigma) {
  return sample / std::sqrt(sigma * sigma + 1.0f);
}

at::Tensor sigma_add_noise(const at::Tensor& original, const at::Tensor& noise, float sigma) {
  SD_CHECK(original.sizes() == noise.sizes(), "add_noise: noise ", noise.sizes(), " does not match the sample ",
           original.sizes());
  return original.to(torch::kFloat) + noise.to(torch::kFloat) * sigma;
}

}  // namespace sd::sched
