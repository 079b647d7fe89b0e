#include "schedulers/schedule_math.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "core/host_to_device.h"
#include "sd/error.h"

namespace sd::sched {

namespace {

// diffusers' betas_for_alpha_bar with the cosine transform (squaredcos_cap_v2), in float64 like
// Python, returned as the float32 tensor diffusers makes of the list.
at::Tensor cosine_betas(int num_train_timesteps) {
  const double pi = 3.141592653589793;  // Python's math.pi
  auto alpha_bar = [pi](double t) {
    const double c = std::cos((t + 0.008) / 1.008 * pi / 2);
    return c * c;
  };
  std::vector<double> betas(num_train_timesteps);
  for (int i = 0; i < num_train_timesteps; ++i) {
    const double t1 = static_cast<double>(i) / num_train_timesteps;
    const double t2 = static_cast<double>(i + 1) / num_train_timesteps;
    betas[i] = std::min(1 - alpha_bar(t2) / alpha_bar(t1), 0.999);
  }
  return torch::tensor(betas, torch::kDouble).to(torch::kFloat);
}

}  // namespace

std::vector<float> alphas_cumprod(const SchedulerConfig& config) {
  const int n = config.num_train_timesteps;
  SD_CHECK(n >= 2, "scheduler config: num_train_timesteps must be at least 2, got ", n);
  at::Tensor betas;
  if (!config.trained_betas.empty()) {
    SD_CHECK(static_cast<int>(config.trained_betas.size()) == n, "scheduler config: trained_betas has ",
             config.trained_betas.size(), " entries, expected num_train_timesteps = ", n);
    betas = torch::tensor(config.trained_betas, torch::kDouble).to(torch::kFloat);
  } else if (config.beta_schedule == "linear") {
    betas = torch::linspace(config.beta_start, config.beta_end, n, torch::kFloat);
  } else if (config.beta_schedule == "scaled_linear") {
    // Python evaluates beta**0.5 in float64 before torch.linspace sees it.
    betas = torch::linspace(std::sqrt(config.beta_start), std::sqrt(config.beta_end), n, torch::kFloat).pow(2);
  } else if (config.beta_schedule == "squaredcos_cap_v2") {
    betas = cosine_betas(n);
  } else {
    SD_FAIL("scheduler config: field 'beta_schedule': expected one of linear, scaled_linear, squaredcos_cap_v2, got '",
            config.beta_schedule, "'");
  }
  // torch's CPU cumprod, so the accumulation order and precision are diffusers' own.
  const at::Tensor cumprod = torch::cumprod(1.0 - betas, 0).contiguous();
  const float* p = cumprod.data_ptr<float>();
  return std::vector<float>(p, p + n);
}

std::vector<float> train_sigmas(const std::vector<float>& alphas_cumprod) {
  std::vector<float> out(alphas_cumprod.size());
  for (size_t i = 0; i < out.size(); ++i) {
    const float a = alphas_cumprod[i];
    out[i] = std::sqrt((1.0f - a) / a);
  }
  return out;
}

std::vector<double> np_linspace(double start, double stop, int num) {
  SD_CHECK(num >= 1, "linspace: need at least one point, got ", num);
  std::vector<double> y(num);
  const int div = num - 1;
  const double step = div > 0 ? (stop - start) / div : 0.0;
  for (int i = 0; i < num; ++i) y[i] = i * step + start;
  if (num > 1) y[num - 1] = stop;
  return y;
}

std::vector<double> np_arange(double start, double stop, double step) {
  const double len = std::ceil((stop - start) / step);
  std::vector<double> y;
  if (!(len > 0)) return y;
  y.resize(static_cast<size_t>(len));
  // numpy fills from the first two values: delta = (start + step) - start.
  const double delta = (start + step) - start;
  for (size_t i = 0; i < y.size(); ++i) y[i] = i == 0 ? start : start + static_cast<double>(i) * delta;
  return y;
}

double np_round(double x) { return std::nearbyint(x); }  // default rounding mode: to nearest, ties to even

std::vector<double> np_interp_unit_grid(const std::vector<double>& x, const std::vector<float>& fp) {
  const int64_t n = static_cast<int64_t>(fp.size());
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double v = x[i];
    if (std::isnan(v)) {
      out[i] = v;
    } else if (v <= 0) {
      out[i] = fp.front();
    } else if (v >= static_cast<double>(n - 1)) {
      out[i] = fp.back();
    } else {
      const auto j = static_cast<int64_t>(std::floor(v));
      if (v == static_cast<double>(j)) {
        out[i] = fp[j];
      } else {
        const double slope = (static_cast<double>(fp[j + 1]) - static_cast<double>(fp[j])) / 1.0;
        out[i] = slope * (v - static_cast<double>(j)) + static_cast<double>(fp[j]);
      }
    }
  }
  return out;
}

double sigma_to_t(double sigma, const std::vector<float>& log_sigmas) {
  const double log_sigma = std::log(std::max(sigma, 1e-10));
  const int64_t n = static_cast<int64_t>(log_sigmas.size());
  // Index of the last log_sigma <= log_sigma (log_sigmas grow with t), 0 if none, at most n - 2.
  int64_t low = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (log_sigma - static_cast<double>(log_sigmas[i]) >= 0) low = i;
  }
  low = std::min(low, n - 2);
  const int64_t high = low + 1;
  const float lo = log_sigmas[low];
  const float hi = log_sigmas[high];
  // numpy: (float32 - float64) / (float32 - float32), the divisor rounded to float32.
  const float span = lo - hi;
  double w = (static_cast<double>(lo) - log_sigma) / static_cast<double>(span);
  w = std::clamp(w, 0.0, 1.0);
  return (1 - w) * static_cast<double>(low) + w * static_cast<double>(high);
}

std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int num) {
  const double rho = 7.0;
  const std::vector<double> ramp = np_linspace(0, 1, num);
  const double min_inv_rho = std::pow(sigma_min, 1 / rho);
  const double max_inv_rho = std::pow(sigma_max, 1 / rho);
  std::vector<double> out(num);
  for (int i = 0; i < num; ++i) out[i] = std::pow(max_inv_rho + ramp[i] * (min_inv_rho - max_inv_rho), rho);
  return out;
}

std::string resolved_spacing(const SchedulerConfig& config, const char* default_spacing) {
  const std::string spacing = config.timestep_spacing.empty() ? default_spacing : config.timestep_spacing;
  SD_CHECK(spacing == "linspace" || spacing == "leading" || spacing == "trailing",
           "scheduler config: field 'timestep_spacing': expected one of linspace, leading, trailing, got '", spacing,
           "'");
  return spacing;
}

void check_prediction_type(const SchedulerConfig& config, std::initializer_list<const char*> allowed,
                           const char* scheduler) {
  std::ostringstream names;
  for (const char* name : allowed) {
    if (config.prediction_type == name) return;
    names << (names.tellp() > 0 ? ", " : "") << name;
  }
  SD_FAIL("scheduler config: field 'prediction_type': ", scheduler, " supports ", names.str(), ", got '",
          config.prediction_type, "'");
}

at::Tensor step_noise(const StepNoise& noise, const at::Tensor& like, const char* scheduler) {
  if (noise.noise.defined()) {
    SD_CHECK(noise.noise.sizes() == like.sizes(), scheduler, ": step noise has shape ", noise.noise.sizes(),
             ", expected the sample's shape ", like.sizes());
    return host_to_device(noise.noise, like.device(), torch::kFloat);
  }
  SD_CHECK(noise.generator != nullptr, scheduler,
           ": this step is stochastic and needs noise: pass StepNoise with a CPU generator or a noise tensor");
  SD_CHECK(noise.generator->device().is_cpu(), scheduler, ": the step noise generator must be a CPU generator, got ",
           noise.generator->device());
  // Drawn on the CPU in float32 whatever the sample's device: diffusers' randn_tensor order.
  const at::Tensor drawn = torch::randn(like.sizes(), *noise.generator, torch::TensorOptions().dtype(torch::kFloat));
  return host_to_device(drawn, like.device());
}

void check_step_index(int64_t step_index, int64_t count, const char* scheduler) {
  SD_CHECK(count > 0, scheduler, ": call set_timesteps() before step()");
  SD_CHECK(step_index >= 0 && step_index < count, scheduler, ": step index ", step_index, " out of range [0, ",
           count, ")");
}

at::Tensor alpha_add_noise(const at::Tensor& original, const at::Tensor& noise, float alpha_cumprod) {
  SD_CHECK(original.sizes() == noise.sizes(), "add_noise: noise ", noise.sizes(), " does not match the sample ",
           original.sizes());
  const float sqrt_alpha = std::sqrt(alpha_cumprod);
  const float sqrt_one_minus_alpha = std::sqrt(1.0f - alpha_cumprod);
  return original.to(torch::kFloat) * sqrt_alpha + noise.to(torch::kFloat) * sqrt_one_minus_alpha;
}

int64_t checked_begin_index(int64_t step_index, int64_t count, const char* scheduler) {
  SD_CHECK(count > 0, scheduler, ": call set_timesteps() before set_begin_index()");
  SD_CHECK(step_index >= 0 && step_index < count, scheduler, ": begin index ", step_index, " outside [0, ", count,
           ")");
  return step_index;
}

}  // namespace sd::sched
