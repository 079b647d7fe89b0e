// DPM-Solver++ 2M (multistep, second order, data prediction), optionally on Karras sigmas.
// The kind decides Karras or not (config.use_karras_sigmas only picks the kind in
// scheduler_kind_from_config), so "dpm++2m" means the same thing whatever the config says.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "schedulers/schedule_math.h"
#include "schedulers/schedulers.h"
#include "sd/error.h"

namespace sd::sched {
namespace {

struct AlphaSigma {
  float alpha, sigma, lambda;
};

// diffusers' _sigma_to_alpha_sigma_t and lambda = log(alpha) - log(sigma), in float32.
AlphaSigma alpha_sigma(float sigma) {
  AlphaSigma r;
  r.alpha = 1.0f / std::sqrt(sigma * sigma + 1.0f);
  r.sigma = sigma * r.alpha;
  r.lambda = std::log(r.alpha) - std::log(r.sigma);
  return r;
}

class DpmSolverScheduler final : public Scheduler {
 public:
  DpmSolverScheduler(const SchedulerConfig& config, bool karras)
      : config_(config), alphas_cumprod_(alphas_cumprod(config)), karras_(karras) {
    check_prediction_type(config, {"epsilon", "v_prediction", "sample"}, "DPMSolverMultistepScheduler");
    spacing_ = resolved_spacing(config, "linspace");
  }

  void set_timesteps(int num_inference_steps) override {
    SD_CHECK(num_inference_steps >= 1, "DPMSolverMultistepScheduler: num_inference_steps must be at least 1, got ",
             num_inference_steps);
    const int n = num_inference_steps;
    const int train = config_.num_train_timesteps;
    // lambda_min_clipped: drop the noisiest training timesteps whose log-SNR lies below it.
    int64_t clipped = 0;
    for (float a : alphas_cumprod_) {
      const float lambda = std::log(std::sqrt(a)) - std::log(std::sqrt(1.0f - a));
      if (static_cast<double>(lambda) < config_.lambda_min_clipped) ++clipped;
    }
    const int64_t last = train - clipped;

    std::vector<int64_t> ts;
    if (spacing_ == "linspace") {
      const std::vector<double> v = np_linspace(0, static_cast<double>(last - 1), n + 1);
      for (int i = n; i >= 1; --i) ts.push_back(static_cast<int64_t>(np_round(v[i])));
    } else if (spacing_ == "leading") {
      const int64_t ratio = last / (n + 1);
      for (int i = n; i >= 1; --i) ts.push_back(i * ratio + config_.steps_offset);
    } else {
      for (double v : np_arange(static_cast<double>(last), 0, -static_cast<double>(train) / n))
        ts.push_back(static_cast<int64_t>(np_round(v)) - 1);
    }

    const std::vector<float> train_sig = train_sigmas(alphas_cumprod_);
    std::vector<double> sigmas;
    if (karras_) {
      std::vector<float> log_sigmas(train_sig.size());
      for (size_t i = 0; i < train_sig.size(); ++i) log_sigmas[i] = std::log(train_sig[i]);
      sigmas = karras_sigmas(train_sig.front(), train_sig.back(), n);
      ts.clear();
      for (double s : sigmas) ts.push_back(static_cast<int64_t>(np_round(sigma_to_t(s, log_sigmas))));
    } else {
      sigmas = np_interp_unit_grid(std::vector<double>(ts.begin(), ts.end()), train_sig);
    }
    const float sigma_last = config_.final_sigmas_type == "sigma_min" ? train_sig.front() : 0.0f;

    timesteps_ = ts;
    sigmas_.clear();
    for (double s : sigmas) sigmas_.push_back(static_cast<float>(s));
    sigmas_.push_back(sigma_last);
    prev_x0_ = at::Tensor();
    last_x0_ = at::Tensor();
    lower_order_nums_ = 0;
    next_index_ = 0;
  }

  at::Tensor timesteps() const override { return torch::tensor(timesteps_, torch::kLong); }
  at::Tensor sigmas() const override { return torch::tensor(sigmas_, torch::kFloat); }
  double init_noise_sigma() const override { return 1.0; }

  at::Tensor step(const at::Tensor& model_output, int64_t step_index, const at::Tensor& sample,
                  const StepNoise& /*noise*/) override {
    const auto count = static_cast<int64_t>(timesteps_.size());
    check_step_index(step_index, count, "DPMSolverMultistepScheduler");
    SD_CHECK(step_index == next_index_, "DPMSolverMultistepScheduler: steps must be taken in order: expected step ",
             next_index_, ", got ", step_index);
    // A first-order last step: stabler for few steps, and required to land on sigma = 0.
    const bool lower_order_final =
        step_index == count - 1 &&
        (config_.euler_at_final || (config_.lower_order_final && count < 15) || config_.final_sigmas_type == "zero");

    const at::Tensor x = sample.to(torch::kFloat);
    const at::Tensor x0 = data_prediction(model_output.to(torch::kFloat), x, sigmas_[step_index]);
    prev_x0_ = last_x0_;
    last_x0_ = x0;

    at::Tensor prev;
    if (lower_order_nums_ < 1 || lower_order_final) {
      prev = first_order(x0, x, step_index);
    } else {
      prev = second_order(x, step_index);
    }
    lower_order_nums_ = std::min(lower_order_nums_ + 1, 2);
    ++next_index_;
    return prev.to(sample.scalar_type());
  }

  void set_begin_index(int64_t step_index) override {
    // lower_order_nums stays 0 (set_timesteps reset it): the first step is first order, as in diffusers.
    next_index_ = checked_begin_index(step_index, static_cast<int64_t>(timesteps_.size()),
                                      "DPMSolverMultistepScheduler");
  }

  at::Tensor add_noise(const at::Tensor& original, const at::Tensor& noise, int64_t step_index) const override {
    check_step_index(step_index, static_cast<int64_t>(timesteps_.size()), "DPMSolverMultistepScheduler");
    SD_CHECK(original.sizes() == noise.sizes(), "add_noise: noise ", noise.sizes(), " does not match the sample ",
             original.sizes());
    const AlphaSigma as = alpha_sigma(sigmas_[step_index]);
    return original.to(torch::kFloat) * as.alpha + noise.to(torch::kFloat) * as.sigma;
  }

  SchedulerKind kind() const override {
    return karras_ ? SchedulerKind::kDPMSolverMultistepKarras : SchedulerKind::kDPMSolverMultistep;
  }

 private:
  at::Tensor data_prediction(const at::Tensor& out, const at::Tensor& x, float sigma) const {
    if (config_.prediction_type == "sample") return out;
    const AlphaSigma as = alpha_sigma(sigma);
    if (config_.prediction_type == "epsilon") return (x - out * as.sigma) / as.alpha;
    return x * as.alpha - out * as.sigma;  // v_prediction
  }

  at::Tensor first_order(const at::Tensor& x0, const at::Tensor& x, int64_t i) const {
    const AlphaSigma t = alpha_sigma(sigmas_[i + 1]);
    const AlphaSigma s = alpha_sigma(sigmas_[i]);
    const float h = t.lambda - s.lambda;
    return x * (t.sigma / s.sigma) - x0 * (t.alpha * (std::exp(-h) - 1.0f));
  }

  at::Tensor second_order(const at::Tensor& x, int64_t i) const {
    const AlphaSigma t = alpha_sigma(sigmas_[i + 1]);
    const AlphaSigma s0 = alpha_sigma(sigmas_[i]);
    const AlphaSigma s1 = alpha_sigma(sigmas_[i - 1]);
    const float h = t.lambda - s0.lambda;
    const float h0 = s0.lambda - s1.lambda;
    const float r0 = h0 / h;
    const at::Tensor& d0 = last_x0_;
    const at::Tensor d1 = (last_x0_ - prev_x0_) * (1.0f / r0);
    const float phi = t.alpha * (std::exp(-h) - 1.0f);
    if (config_.solver_type == "heun") {
      return x * (t.sigma / s0.sigma) - d0 * phi + d1 * (t.alpha * ((std::exp(-h) - 1.0f) / h + 1.0f));
    }
    return x * (t.sigma / s0.sigma) - d0 * phi - d1 * (0.5f * phi);
  }

  SchedulerConfig config_;
  std::vector<float> alphas_cumprod_;
  bool karras_ = false;
  std::string spacing_;
  std::vector<int64_t> timesteps_;
  std::vector<float> sigmas_;
  at::Tensor prev_x0_, last_x0_;  // the data predictions of the previous and the current step
  int lower_order_nums_ = 0;
  int64_t next_index_ = 0;
};

}  // namespace

std::unique_ptr<Scheduler> make_dpm_solver(const SchedulerConfig& config, bool karras) {
  return std::make_unique<DpmSolverScheduler>(config, karras);
}

}  // namespace sd::sched
