// Scheduler names, kinds and construction.
#include <sstream>

#include "schedulers/schedulers.h"
#include "sd/error.h"
#include "sd/scheduler.h"

namespace sd {

namespace {

struct KindName {
  SchedulerKind kind;
  const char* name;
};

constexpr KindName kKindNames[] = {
    {SchedulerKind::kPNDM, "pndm"},
    {SchedulerKind::kDDIM, "ddim"},
    {SchedulerKind::kEuler, "euler"},
    {SchedulerKind::kEulerAncestral, "euler-a"},
    {SchedulerKind::kDPMSolverMultistep, "dpm++2m"},
    {SchedulerKind::kDPMSolverMultistepKarras, "dpm++2m-karras"},
    {SchedulerKind::kLMS, "lms"},
};

std::string valid_names() {
  std::ostringstream out;
  for (const auto& kn : kKindNames) out << (out.tellp() > 0 ? ", " : "") << kn.name;
  return out.str();
}

}  // namespace

at::Tensor Scheduler::scale_model_input(const at::Tensor& sample, int64_t /*step_index*/) const { return sample; }

SchedulerKind scheduler_kind_from_name(std::string_view name) {
  for (const auto& kn : kKindNames) {
    if (name == kn.name) return kn.kind;
  }
  SD_FAIL("unknown scheduler '", name, "': expected one of ", valid_names());
}

std::string scheduler_name(SchedulerKind kind) {
  for (const auto& kn : kKindNames) {
    if (kind == kn.kind) return kn.name;
  }
  SD_FAIL("scheduler_name: invalid SchedulerKind ", static_cast<int>(kind));
}

std::vector<SchedulerKind> all_scheduler_kinds() {
  std::vector<SchedulerKind> out;
  for (const auto& kn : kKindNames) out.push_back(kn.kind);
  return out;
}

SchedulerKind scheduler_kind_from_config(const SchedulerConfig& config) {
  const std::string& c = config.class_name;
  if (c == "PNDMScheduler") return SchedulerKind::kPNDM;
  if (c == "DDIMScheduler") return SchedulerKind::kDDIM;
  if (c == "EulerDiscreteScheduler") return SchedulerKind::kEuler;
  if (c == "EulerAncestralDiscreteScheduler") return SchedulerKind::kEulerAncestral;
  if (c == "LMSDiscreteScheduler") return SchedulerKind::kLMS;
  if (c == "DPMSolverMultistepScheduler") {
    return config.use_karras_sigmas ? SchedulerKind::kDPMSolverMultistepKarras : SchedulerKind::kDPMSolverMultistep;
  }
  SD_FAIL("scheduler config: field '_class_name': expected one of PNDMScheduler, DDIMScheduler, EulerDiscreteScheduler, "
          "EulerAncestralDiscreteScheduler, DPMSolverMultistepScheduler, LMSDiscreteScheduler, got '",
          c, "'");
}

std::unique_ptr<Scheduler> make_scheduler(SchedulerKind kind, const SchedulerConfig& config,
                                          const SchedulerOptions& options) {
  // Like diffusers' pipelines, the other schedulers ignore eta.
  switch (kind) {
    case SchedulerKind::kPNDM: return sched::make_pndm(config);
    case SchedulerKind::kDDIM: return sched::make_ddim(config, options.eta);
    case SchedulerKind::kEuler: return sched::make_euler(config);
    case SchedulerKind::kEulerAncestral: return sched::make_euler_ancestral(config);
    case SchedulerKind::kDPMSolverMultistep: return sched::make_dpm_solver(config, false);
    case SchedulerKind::kDPMSolverMultistepKarras: return sched::make_dpm_solver(config, true);
    case SchedulerKind::kLMS: return sched::make_lms(config);
  }
  SD_FAIL("make_scheduler: invalid SchedulerKind ", static_cast<int>(kind));
}

}  // namespace sd
