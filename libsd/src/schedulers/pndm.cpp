// PNDM as Stable Diffusion uses it: skip_prk_steps, i.e. PLMS (a 4th-order linear multistep method
// on the noise prediction) with a Heun-like warm-up at a repeated second timestep.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <deque>

#include "schedulers/schedule_math.h"
#include "schedulers/schedulers.h"
#include "sd/error.h"

namespace sd::sched {
namespace {

class PndmScheduler final : public Scheduler {
 public:
  explicit PndmScheduler(const SchedulerConfig& config) : config_(config), alphas_cumprod_(alphas_cumprod(config)) {
    SD_CHECK(config.skip_prk_steps, "scheduler config: field 'skip_prk_steps': PNDM is supported with true only");
    check_prediction_type(config, {"epsilon", "v_prediction"}, "PNDMScheduler");
    spacing_ = resolved_spacing(config, "leading");
    final_alpha_cumprod_ = config.set_alpha_to_one ? 1.0f : alphas_cumprod_[0];
  }

  void set_timesteps(int num_inference_steps) override {
    SD_CHECK(num_inference_steps >= 1 && num_inference_steps <= config_.num_train_timesteps,
             "PNDMScheduler: num_inference_steps must be in [1, ", config_.num_train_timesteps, "], got ",
             num_inference_steps);
    const int n = num_inference_steps;
    const int train = config_.num_train_timesteps;
    std::vector<int64_t> base;  // ascending, diffusers' _timesteps
    if (spacing_ == "linspace") {
      for (double v : np_linspace(0, train - 1, n)) base.push_back(static_cast<int64_t>(np_round(v)));
    } else if (spacing_ == "leading") {
      for (int i = 0; i < n; ++i) base.push_back(static_cast<int64_t>(i) * (train / n) + config_.steps_offset);
    } else {
      for (double v : np_arange(train, 0, -static_cast<double>(train) / n)) base.push_back(static_cast<int64_t>(np_round(v)) - 1);
      std::reverse(base.begin(), base.end());
    }
    // PLMS: every timestep once, the second-to-last (second in sampling order) twice.
    std::vector<int64_t> plms(base.begin(), base.end() - 1);
    if (base.size() >= 2) plms.push_back(base[base.size() - 2]);
    plms.push_back(base.back());
    std::reverse(plms.begin(), plms.end());
    timesteps_ = plms;
    num_inference_steps_ = n;
    ets_.clear();
    cur_sample_ = at::Tensor();
    counter_ = 0;
    next_index_ = 0;
  }

  at::Tensor timesteps() const override { return torch::tensor(timesteps_, torch::kLong); }
  double init_noise_sigma() const override { return 1.0; }

  at::Tensor step(const at::Tensor& model_output, int64_t step_index, const at::Tensor& sample,
                  const StepNoise& /*noise*/) override {
    check_step_index(step_index, static_cast<int64_t>(timesteps_.size()), "PNDMScheduler");
    // The history makes the result depend on every earlier step: they must come in order.
    SD_CHECK(step_index == next_index_, "PNDMScheduler: steps must be taken in order: expected step ", next_index_,
             ", got ", step_index);
    const int64_t ratio = config_.num_train_timesteps / num_inference_steps_;
    int64_t timestep = timesteps_[step_index];
    int64_t prev_timestep = timestep - ratio;
    at::Tensor x = sample.to(torch::kFloat);
    at::Tensor eps = model_output.to(torch::kFloat);

    if (counter_ != 1) {
      while (ets_.size() > 3) ets_.pop_front();
      ets_.push_back(eps);
    } else {
      // The repeated timestep: redo the first step from its start with the averaged prediction.
      prev_timestep = timestep;
      timestep = timestep + ratio;
    }

    const size_t k = ets_.size();
    if (k == 1 && counter_ == 0) {
      cur_sample_ = x;
    } else if (k == 1 && counter_ == 1) {
      eps = (eps + ets_.back()) / 2;
      x = cur_sample_;
      cur_sample_ = at::Tensor();
    } else if (k == 2) {
      eps = (ets_[1] * 3 - ets_[0]) / 2;
    } else if (k == 3) {
      eps = (ets_[2] * 23 - ets_[1] * 16 + ets_[0] * 5) / 12;
    } else {
      eps = (ets_[3] * 55 - ets_[2] * 59 + ets_[1] * 37 - ets_[0] * 9) * static_cast<float>(1.0 / 24);
    }

    at::Tensor prev = prev_sample(x, timestep, prev_timestep, eps);
    ++counter_;
    ++next_index_;
    return prev.to(sample.scalar_type());
  }

  void set_begin_index(int64_t step_index) override {
    // The PLMS history (counter, ets) stays as set_timesteps left it: empty, as diffusers'.
    next_index_ = checked_begin_index(step_index, static_cast<int64_t>(timesteps_.size()), "PNDMScheduler");
  }

  at::Tensor add_noise(const at::Tensor& original, const at::Tensor& noise, int64_t step_index) const override {
    check_step_index(step_index, static_cast<int64_t>(timesteps_.size()), "PNDMScheduler");
    return alpha_add_noise(original, noise, alphas_cumprod_[timesteps_[step_index]]);
  }

  SchedulerKind kind() const override { return SchedulerKind::kPNDM; }

 private:
  // Formula (9) of the PNDM paper, in float32 like diffusers' 0-dim tensor arithmetic.
  at::Tensor prev_sample(const at::Tensor& x, int64_t timestep, int64_t prev_timestep, at::Tensor eps) const {
    SD_CHECK(timestep >= 0 && timestep < config_.num_train_timesteps, "PNDMScheduler: timestep ", timestep,
             " outside the training range [0, ", config_.num_train_timesteps, ")");
    const float a_t = alphas_cumprod_[timestep];
    const float a_prev = prev_timestep >= 0 ? alphas_cumprod_[prev_timestep] : final_alpha_cumprod_;
    const float b_t = 1.0f - a_t;
    const float b_prev = 1.0f - a_prev;
    if (config_.prediction_type == "v_prediction") eps = eps * std::sqrt(a_t) + x * std::sqrt(b_t);
    const float sample_coeff = std::sqrt(a_prev / a_t);
    const float denom = a_t * std::sqrt(b_prev) + std::sqrt(a_t * b_t * a_prev);
    return x * sample_coeff - eps * (a_prev - a_t) / denom;
  }

  SchedulerConfig config_;
  std::vector<float> alphas_cumprod_;
  float final_alpha_cumprod_ = 1.0f;
  std::string spacing_;
  std::vector<int64_t> timesteps_;
  int num_inference_steps_ = 0;
  std::deque<at::Tensor> ets_;  // the last (up to 4) model outputs
  at::Tensor cur_sample_;       // the first step's input, reused at the repeated timestep
  int counter_ = 0;
  int64_t next_index_ = 0;
};

}  // namespace

std::unique_ptr<Scheduler> make_pndm(const SchedulerConfig& config) { return std::make_unique<PndmScheduler>(config); }

}  // namespace sd::sched
