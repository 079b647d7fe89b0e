// LMS (linear multistep in sigma, order 4): the coefficients integrate the Lagrange basis
// polynomials through the last sigmas over the step [sigma_i, sigma_{i+1}].
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <deque>

#include "schedulers/schedule_math.h"
#include "schedulers/schedulers.h"
#include "schedulers/sigma_schedule.h"
#include "sd/error.h"

namespace sd::sched {
namespace {

constexpr int kOrder = 4;

// Gauss-Legendre nodes and weights on [-1, 1], by Newton's method on P_n. With n points the rule
// integrates polynomials of degree 2n - 1 exactly; the LMS integrands have degree order - 1 <= 3, so
// the result is the exact integral (diffusers gets the same from scipy's adaptive quad).
struct GaussLegendre {
  std::vector<double> nodes, weights;
  explicit GaussLegendre(int n) : nodes(n), weights(n) {
    const double pi = 3.141592653589793;
    for (int i = 0; i < n; ++i) {
      double x = std::cos(pi * (i + 0.75) / (n + 0.5));
      double dp = 0;
      for (int iter = 0; iter < 100; ++iter) {
        double p0 = 1, p1 = x;
        for (int k = 2; k <= n; ++k) {
          const double p2 = ((2 * k - 1) * x * p1 - (k - 1) * p0) / k;
          p0 = p1;
          p1 = p2;
        }
        dp = n * (x * p1 - p0) / (x * x - 1);
        const double dx = p1 / dp;
        x -= dx;
        if (std::abs(dx) < 1e-16) break;
      }
      nodes[i] = x;
      weights[i] = 2 / ((1 - x * x) * dp * dp);
    }
  }
};

class LmsScheduler final : public Scheduler {
 public:
  explicit LmsScheduler(const SchedulerConfig& config) : config_(config), alphas_cumprod_(alphas_cumprod(config)) {
    check_prediction_type(config, {"epsilon", "v_prediction", "sample"}, "LMSDiscreteScheduler");
    resolved_spacing(config, "linspace");
  }

  void set_timesteps(int num_inference_steps) override {
    schedule_ = make_sigma_schedule(config_, alphas_cumprod_, num_inference_steps, config_.use_karras_sigmas);
    derivatives_.clear();
    next_index_ = 0;
  }
  at::Tensor timesteps() const override { return torch::tensor(schedule_.timesteps, torch::kFloat); }
  at::Tensor sigmas() const override { return torch::tensor(schedule_.sigmas, torch::kFloat); }
  double init_noise_sigma() const override { return sigma_init_noise(schedule_); }

  at::Tensor scale_model_input(const at::Tensor& sample, int64_t step_index) const override {
    check_step_index(step_index, static_cast<int64_t>(schedule_.timesteps.size()), "LMSDiscreteScheduler");
    return sigma_scale_input(sample.to(torch::kFloat), schedule_.sigmas[step_index]).to(sample.scalar_type());
  }

  at::Tensor step(const at::Tensor& model_output, int64_t step_index, const at::Tensor& sample,
                  const StepNoise& /*noise*/) override {
    check_step_index(step_index, static_cast<int64_t>(schedule_.timesteps.size()), "LMSDiscreteScheduler");
    SD_CHECK(step_index == next_index_, "LMSDiscreteScheduler: steps must be taken in order: expected step ",
             next_index_, ", got ", step_index);
    const at::Tensor x = sample.to(torch::kFloat);
    const at::Tensor out = model_output.to(torch::kFloat);
    const float sigma = schedule_.sigmas[step_index];
    const at::Tensor pred_x0 = sigma_pred_original(config_.prediction_type, out, x, sigma);
    derivatives_.push_back((x - pred_x0) / sigma);
    if (derivatives_.size() > kOrder) derivatives_.pop_front();

    // diffusers takes the order from the step index, not from the history: after a begin index
    // (image-to-image) the first steps use order-4 coefficients with fewer derivatives, and its
    // zip() pairs only as many coefficients as there are derivatives.
    const int order = static_cast<int>(std::min<int64_t>(step_index + 1, kOrder));
    const int terms = std::min(order, static_cast<int>(derivatives_.size()));
    // sum(coeff * derivative) over the newest derivatives first, accumulated left to right.
    at::Tensor sum;
    for (int j = 0; j < terms; ++j) {
      const at::Tensor term = derivatives_[derivatives_.size() - 1 - j] * coefficient(order, step_index, j);
      sum = sum.defined() ? sum + term : term;
    }
    ++next_index_;
    return (x + sum).to(sample.scalar_type());
  }

  void set_begin_index(int64_t step_index) override {
    next_index_ = checked_begin_index(step_index, static_cast<int64_t>(schedule_.timesteps.size()),
                                      "LMSDiscreteScheduler");
  }

  at::Tensor add_noise(const at::Tensor& original, const at::Tensor& noise, int64_t step_index) const override {
    check_step_index(step_index, static_cast<int64_t>(schedule_.timesteps.size()), "LMSDiscreteScheduler");
    return sigma_add_noise(original, noise, schedule_.sigmas[step_index]);
  }

  SchedulerKind kind() const override { return SchedulerKind::kLMS; }

 private:
  // Integral over [sigma_t, sigma_{t+1}] of the Lagrange basis polynomial that is 1 at
  // sigma_{t - current} and 0 at the other sigma_{t - k}, k < order.
  double coefficient(int order, int64_t t, int current) const {
    static const GaussLegendre rule(8);
    const auto& s = schedule_.sigmas;
    auto basis = [&](double tau) {
      double prod = 1.0;
      for (int k = 0; k < order; ++k) {
        if (k == current) continue;
        prod *= (tau - s[t - k]) / (static_cast<double>(s[t - current]) - s[t - k]);
      }
      return prod;
    };
    const double a = s[t], b = s[t + 1];
    const double half = (b - a) / 2, mid = (a + b) / 2;
    double total = 0;
    for (size_t i = 0; i < rule.nodes.size(); ++i) total += rule.weights[i] * basis(mid + half * rule.nodes[i]);
    return total * half;
  }

  SchedulerConfig config_;
  std::vector<float> alphas_cumprod_;
  SigmaSchedule schedule_;
  std::deque<at::Tensor> derivatives_;
  int64_t next_index_ = 0;
};

}  // namespace

std::unique_ptr<Scheduler> make_lms(const SchedulerConfig& config) { return std::make_unique<LmsScheduler>(config); }

}  // namespace sd::sched
