// Euler (Karras et al.'s Algorithm 2 without churn): one first-order step in sigma per call.
#include <torch/torch.h>

#include "schedulers/schedule_math.h"
#include "schedulers/schedulers.h"
#include "schedulers/sigma_schedule.h"
#include "sd/error.h"

namespace sd::sched {
namespace {

class EulerScheduler final : public Scheduler {
 public:
  explicit EulerScheduler(const SchedulerConfig& config) : config_(config), alphas_cumprod_(alphas_cumprod(config)) {
    check_prediction_type(config, {"epsilon", "v_prediction", "sample"}, "EulerDiscreteScheduler");
    resolved_spacing(config, "linspace");
  }

  void set_timesteps(int num_inference_steps) override {
    schedule_ = make_sigma_schedule(config_, alphas_cumprod_, num_inference_steps, config_.use_karras_sigmas);
  }
  at::Tensor timesteps() const override { return torch::tensor(schedule_.timesteps, torch::kFloat); }
  at::Tensor sigmas() const override { return torch::tensor(schedule_.sigmas, torch::kFloat); }
  double init_noise_sigma() const override { return sigma_init_noise(schedule_); }

  at::Tensor scale_model_input(const at::Tensor& sample, int64_t step_index) const override {
    check_step_index(step_index, static_cast<int64_t>(schedule_.timesteps.size()), "EulerDiscreteScheduler");
    return sigma_scale_input(sample.to(torch::kFloat), schedule_.sigmas[step_index]).to(sample.scalar_type());
  }

  at::Tensor step(const at::Tensor& model_output, int64_t step_index, const at::Tensor& sample,
                  const StepNoise& /*noise*/) override {
    check_step_index(step_index, static_cast<int64_t>(schedule_.timesteps.size()), "EulerDiscreteScheduler");
    const at::Tensor x = sample.to(torch::kFloat);
    const at::Tensor out = model_output.to(torch::kFloat);
    // s_churn = 0: gamma = 0 and sigma_hat = sigma; the noise diffusers draws here goes unused.
    const float sigma = schedule_.sigmas[step_index];
    const at::Tensor pred_x0 = sigma_pred_original(config_.prediction_type, out, x, sigma);
    const at::Tensor derivative = (x - pred_x0) / sigma;
    const float dt = schedule_.sigmas[step_index + 1] - sigma;
    return (x + derivative * dt).to(sample.scalar_type());
  }

  void set_begin_index(int64_t step_index) override {
    checked_begin_index(step_index, static_cast<int64_t>(schedule_.timesteps.size()), "EulerDiscreteScheduler");  // stateless
  }

  at::Tensor add_noise(const at::Tensor& original, const at::Tensor& noise, int64_t step_index) const override {
    check_step_index(step_index, static_cast<int64_t>(schedule_.timesteps.size()), "EulerDiscreteScheduler");
    return sigma_add_noise(original, noise, schedule_.sigmas[step_index]);
  }

  SchedulerKind kind() const override { return SchedulerKind::kEuler; }

 private:
  SchedulerConfig config_;
  std::vector<float> alphas_cumprod_;
  SigmaSchedule schedule_;
};

}  // namespace

std::unique_ptr<Scheduler> make_euler(const SchedulerConfig& config) { return std::make_unique<EulerScheduler>(config); }

}  // namespace sd::sched
