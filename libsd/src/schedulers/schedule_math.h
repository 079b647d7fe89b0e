#pragma once
// Shared pieces of the schedulers: the training noise schedule and the numpy arithmetic diffusers
// builds its inference schedules with. Each helper reproduces numpy's (or torch's) exact order of
// operations and dtype, because timesteps must come out bit-identical and sigmas to the last ulp.
#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "sd/scheduler.h"

namespace sd::sched {

// betas -> alphas = 1 - betas -> cumprod, all float32 in torch as diffusers does (fails on a bad
// beta_schedule or an unsupported option such as rescale_betas_zero_snr).
std::vector<float> alphas_cumprod(const SchedulerConfig& config);

// ((1 - a) / a) ** 0.5 per entry, in float32 (torch ops on the float32 alphas_cumprod).
std::vector<float> train_sigmas(const std::vector<float>& alphas_cumprod);

// numpy.linspace(start, stop, num) in float64 (endpoint included).
std::vector<double> np_linspace(double start, double stop, int num);
// numpy.arange(start, stop, step) in float64.
std::vector<double> np_arange(double start, double stop, double step);
// numpy.round: half to even.
double np_round(double x);
// numpy.interp(x, arange(len(fp)), fp) in float64.
std::vector<double> np_interp_unit_grid(const std::vector<double>& x, const std::vector<float>& fp);
// diffusers' _sigma_to_t: the fractional training timestep of `sigma` by log-linear interpolation.
double sigma_to_t(double sigma, const std::vector<float>& log_sigmas);
// diffusers' _convert_to_karras (rho = 7) between sigma_max and sigma_min, `num` values, float64.
std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int num);

// The config's timestep_spacing, or `default_spacing` when it is empty; checked against the three
// spacings diffusers knows.
std::string resolved_spacing(const SchedulerConfig& config, const char* default_spacing);

// Throws unless config.prediction_type is one of `allowed` (comma-separated names for the message).
void check_prediction_type(const SchedulerConfig& config, std::initializer_list<const char*> allowed,
                           const char* scheduler);

// Noise shaped like `like` for a stochastic step: the given tensor, or randn from the CPU generator
// in float32, moved to like's device. `scheduler` names the caller in errors.
at::Tensor step_noise(const StepNoise& noise, const at::Tensor& like, const char* scheduler);

// Checks that set_timesteps ran and that step_index is in range; `count` = number of timesteps.
void check_step_index(int64_t step_index, int64_t count, const char* scheduler);

// add_noise of the DDPM-parameterized schedulers (PNDM, DDIM): sqrt(a) * original + sqrt(1 - a) *
// noise at the cumulative alpha `a` of one timestep, float32 as diffusers' tensor arithmetic.
at::Tensor alpha_add_noise(const at::Tensor& original, const at::Tensor& noise, float alpha_cumprod);

// The begin index of image-to-image, checked against the schedule (`count` timesteps).
int64_t checked_begin_index(int64_t step_index, int64_t count, const char* scheduler);

}  // namespace sd::sched
