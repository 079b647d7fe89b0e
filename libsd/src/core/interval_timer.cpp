#include "core/interval_timer.h"

#include <chrono>

namespace sd {

namespace {

// The CPU runs each interval's work before end() returns: the wall clock measures it.
class WallClockTimer : public IntervalTimer {
 public:
  void begin() override { start_ = Clock::now(); }
  void end() override { seconds_.push_back(std::chrono::duration<double>(Clock::now() - start_).count()); }
  std::vector<double> seconds() override { return seconds_; }

 private:
  using Clock = std::chrono::steady_clock;
  Clock::time_point start_;
  std::vector<double> seconds_;
};

}  // namespace

std::unique_ptr<IntervalTimer> make_interval_timer(const c10::Device& device) {
#ifdef LIBSD_WITH_CUDA
  if (device.is_cuda()) return detail::make_cuda_event_timer(device);
#else
  (void)device;
#endif
  return std::make_unique<WallClockTimer>();
}

}  // namespace sd
