// DDIM (Song et al.): deterministic for eta = 0, adds scaled variance noise for eta > 0.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "schedulers/schedule_math.h"
#include "schedulers/schedulers.h"
#include "sd/error.h"

namespace sd::sched {
namespace {

class DdimScheduler final : public Scheduler {
 public:
  DdimScheduler(const SchedulerConfig& config, double eta)
      : config_(config), alphas_cumprod_(alphas_cumprod(config)), eta_(eta) {
    SD_CHECK(std::isfinite(eta) && eta >= 0, "DDIMScheduler: eta must be a finite value >= 0, got ", eta);
    check_prediction_type(config, {"epsilon", "v_prediction", "sample"}, "DDIMScheduler");
    spacing_ = resolved_spacing(config, "leading");
    final_alpha_cumprod_ = config.set_alpha_to_one ? 1.0f : alphas_cumprod_[0];
  }

  void set_timesteps(int num_inference_steps) override {
    SD_CHECK(num_inference_steps >= 1 && num_inference_steps <= config_.num_train_timesteps,
             "DDIMScheduler: num_inference_steps must be in [1, ", config_.num_train_timesteps, "], got ",
             num_inference_steps);
    const int n = num_inference_steps;
    const int train = config_.num_train_timesteps;
    timesteps_.clear();
    if (spacing_ == "linspace") {
      for (double v : np_linspace(0, train - 1, n)) timesteps_.push_back(static_cast<int64_t>(np_round(v)));
      std::reverse(timesteps_.begin(), timesteps_.end());
    } else if (spacing_ == "leading") {
      for (int i = n - 1; i >= 0; --i) timesteps_.push_back(static_cast<int64_t>(i) * (train / n) + config_.steps_offset);
    } else {
      for (double v : np_arange(train, 0, -static_cast<double>(train) / n)) timesteps_.push_back(static_cast<int64_t>(np_round(v)) - 1);
    }
    num_inference_steps_ = n;
  }

  at::Tensor timesteps() const override { return torch::tensor(timesteps_, torch::kLong); }
  double init_noise_sigma() const override { return 1.0; }
  bool needs_noise() const override { return eta_ > 0; }

  at::Tensor step(const at::Tensor& model_output, int64_t step_index, const at::Tensor& sample,
                  const StepNoise& noise) override {
    check_step_index(step_index, static_cast<int64_t>(timesteps_.size()), "DDIMScheduler");
    const int64_t timestep = timesteps_[step_index];
    const int64_t prev_timestep = timestep - config_.num_train_timesteps / num_inference_steps_;
    SD_CHECK(timestep >= 0 && timestep < config_.num_train_timesteps, "DDIMScheduler: timestep ", timestep,
             " outside the training range [0, ", config_.num_train_timesteps, ")");
    const float a_t = alphas_cumprod_[timestep];
    const float a_prev = prev_timestep >= 0 ? alphas_cumprod_[prev_timestep] : final_alpha_cumprod_;
    const float b_t = 1.0f - a_t;
    const float b_prev = 1.0f - a_prev;

    const at::Tensor x = sample.to(torch::kFloat);
    const at::Tensor out = model_output.to(torch::kFloat);
    at::Tensor pred_x0, pred_eps;
    if (config_.prediction_type == "epsilon") {
      pred_x0 = (x - out * std::sqrt(b_t)) / std::sqrt(a_t);
      pred_eps = out;
    } else if (config_.prediction_type == "sample") {
      pred_x0 = out;
      pred_eps = (x - pred_x0 * std::sqrt(a_t)) / std::sqrt(b_t);
    } else {  // v_prediction
      pred_x0 = x * std::sqrt(a_t) - out * std::sqrt(b_t);
      pred_eps = out * std::sqrt(a_t) + x * std::sqrt(b_t);
    }
    if (config_.clip_sample) {
      const double r = config_.clip_sample_range;
      pred_x0 = pred_x0.clamp(-r, r);
    }

    const float variance = (b_prev / b_t) * (1.0f - a_t / a_prev);
    const float std_dev = static_cast<float>(eta_) * std::sqrt(variance);
    const at::Tensor direction = pred_eps * std::sqrt(1.0f - a_prev - std_dev * std_dev);
    at::Tensor prev = pred_x0 * std::sqrt(a_prev) + direction;
    if (eta_ > 0) prev = prev + step_noise(noise, x, "DDIMScheduler") * std_dev;
    return prev.to(sample.scalar_type());
  }

  void set_begin_index(int64_t step_index) override {
    checked_begin_index(step_index, static_cast<int64_t>(timesteps_.size()), "DDIMScheduler");  // stateless
  }

  at::Tensor add_noise(const at::Tensor& original, const at::Tensor& noise, int64_t step_index) const override {
    check_step_index(step_index, static_cast<int64_t>(timesteps_.size()), "DDIMScheduler");
    return alpha_add_noise(original, noise, alphas_cumprod_[timesteps_[step_index]]);
  }

  SchedulerKind kind() const override { return SchedulerKind::kDDIM; }

 private:
  SchedulerConfig config_;
  std::vector<float> alphas_cumprod_;
  double eta_ = 0.0;
  float final_alpha_cumprod_ = 1.0f;
  std::string spacing_;
  std::vector<int64_t> timesteps_;
  int num_inference_steps_ = 0;
};

}  // namespace

std::unique_ptr<Scheduler> make_ddim(const SchedulerConfig& config, double eta) {
  return std::make_unique<DdimScheduler>(config, eta);
}

}  // namespace sd::sched
