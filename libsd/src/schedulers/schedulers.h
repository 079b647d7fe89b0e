#pragma once
// Constructors of the concrete schedulers; make_scheduler (factory.cpp) picks one by kind.
#include <memory>

#include "sd/scheduler.h"

namespace sd::sched {

std::unique_ptr<Scheduler> make_pndm(const SchedulerConfig& config);
std::unique_ptr<Scheduler> make_ddim(const SchedulerConfig& config, double eta);
std::unique_ptr<Scheduler> make_euler(const SchedulerConfig& config);
std::unique_ptr<Scheduler> make_euler_ancestral(const SchedulerConfig& config);
std::unique_ptr<Scheduler> make_dpm_solver(const SchedulerConfig& config, bool karras);
std::unique_ptr<Scheduler> make_lms(const SchedulerConfig& config);

}  // namespace sd::sched
