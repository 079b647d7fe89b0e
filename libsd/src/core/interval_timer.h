#pragma once
// Times a series of intervals (each UNet evaluation, each scheduler step) without making the host
// wait for the device at every one: on CUDA with timing events recorded on the current stream and
// read once at the end (interval_timer_cuda.cpp); elsewhere with the wall clock.
#include <c10/core/Device.h>

#include <memory>
#include <vector>

namespace sd {

class IntervalTimer {
 public:
  virtual ~IntervalTimer() = default;
  virtual void begin() = 0;
  virtual void end() = 0;
  // The lengths of the intervals ended so far, in seconds, in order (on CUDA: waits for them).
  virtual std::vector<double> seconds() = 0;
};

std::unique_ptr<IntervalTimer> make_interval_timer(const c10::Device& device);

namespace detail {
// CUDA events on `device`'s current stream (interval_timer_cuda.cpp, LIBSD_WITH_CUDA only).
std::unique_ptr<IntervalTimer> make_cuda_event_timer(const c10::Device& device);
}  // namespace detail

}  // namespace sd
