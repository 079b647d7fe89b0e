// Euler ancestral: an Euler step down to sigma_down, then fresh noise of scale sigma_up, so that
// the marginal noise level lands on the next sigma.
#include <torch/torch.h>

#include <cmath>

#include "schedulers/schedule_math.h"
#include "schedulers/schedulers.h"
#include "schedulers/sigma_schedule.h"
#include "sd/error.h"

namespace sd::sched {
namespace {

class EulerAncestralScheduler final : public Scheduler {
 public:
  explicit EulerAncestralScheduler(const SchedulerConfig& config)
      : config_(config), alphas_cumprod_(alphas_cumprod(config)) {
    check_prediction_type(config, {"epsilon", "v_prediction"}, "EulerAncestralDiscreteScheduler");
    resolved_spacing(config, "linspace");
  }

  void set_timesteps(int num_inference_steps) override {
    // diffusers 0.27's Euler ancestral has no Karras option.
    schedule_ = make_sigma_schedule(config_, alphas_cumprod_, num_inference_steps, false);
  }
  at::Tensor timesteps() const override { return torch::tensor(schedule_.timesteps, torch::kFloat); }
  at::Tensor sigmas() const override { return torch::tensor(schedule_.sigmas, torch::kFloat); }
  double init_noise_sigma() const override { return sigma_init_noise(schedule_); }
  bool needs_noise() const override { return true; }

  at::Tensor scale_model_input(const at::Tensor& sample, int64_t step_index) const override {
    check_step_index(step_index, static_cast<int64_t>(schedule_.timesteps.size()), "EulerAncestralDiscreteScheduler");
    return sigma_scale_input(sample.to(torch::kFloat), schedule_.sigmas[step_index]).to(sample.scalar_type());
  }

  at::Tensor step(const at::Tensor& model_output, int64_t step_index, const at::Tensor& sample,
                  const StepNoise& noise) override {
    check_step_index(step_index, static_cast<int64_t>(schedule_.timesteps.size()), "EulerAncestralDiscreteScheduler");
    const at::Tensor x = sample.to(torch::kFloat);
    const at::Tensor out = model_output.to(torch::kFloat);
    const float sigma = schedule_.sigmas[step_index];
    const at::Tensor pred_x0 = sigma_pred_original(config_.prediction_type, out, x, sigma);

    const float sigma_from = sigma;
    const float sigma_to = schedule_.sigmas[step_index + 1];
    const float sigma_up =
        std::sqrt(sigma_to * sigma_to * (sigma_from * sigma_from - sigma_to * sigma_to) / (sigma_from * sigma_from));
    const float sigma_down = std::sqrt(sigma_to * sigma_to - sigma_up * sigma_up);

    const at::Tensor derivative = (x - pred_x0) / sigma;
    const float dt = sigma_down - sigma;
    at::Tensor prev = x + derivative * dt;
    // Drawn at every step, the last included, as diffusers does: the generator's sequence matches.
    prev = prev + step_noise(noise, x, "EulerAncestralDiscreteScheduler") * sigma_up;
    return prev.to(sample.scalar_type());
  }

  void set_begin_index(int64_t step_index) override {
    checked_begin_index(step_index, static_cast<int64_t>(schedule_.timesteps.size()), "EulerAncestralDiscreteScheduler");  // stateless
  }

  at::Tensor add_noise(const at::Tensor& original, const at::Tensor& noise, int64_t step_index) const override {
    check_step_index(step_index, static_cast<int64_t>(schedule_.timesteps.size()), "EulerAncestralDiscreteScheduler");
    return sigma_add_noise(original, noise, schedule_.sigmas[step_index]);
  }

  SchedulerKind kind() const override { return SchedulerKind::kEulerAncestral; }

 private:
  SchedulerConfig config_;
  std::vector<float> alphas_cumprod_;
  SigmaSchedule schedule_;
};

}  // namespace

std::unique_ptr<Scheduler> make_euler_ancestral(const SchedulerConfig& config) {
  return std::make_unique<EulerAncestralScheduler>(config);
}

}  // namespace sd::sched
