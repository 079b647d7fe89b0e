#pragma once
// Counters of `sd serve`, rendered in Prometheus' text exposition format at GET /metrics.
#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace sd_serve {

class Metrics {
 public:
  void count_request(int status);
  void count_images(int64_t n) { images_ += n; }
  void count_unet_evaluations(int64_t n) { unet_evaluations_ += n; }
  void count_batch(int64_t jobs) { batches_ += 1; batched_jobs_ += jobs; }
  void count_error(const std::string& kind);
  // A generation request's time from submission to its answer.
  void observe_latency(double seconds);
  std::string render(size_t queue_length, size_t queue_capacity, bool running) const;

 private:
  static constexpr std::array<double, 10> kBuckets{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
  std::atomic<int64_t> images_{0}, unet_evaluations_{0}, batches_{0}, batched_jobs_{0};
  mutable std::mutex mutex_;
  std::map<int, int64_t> requests_by_status_;
  std::map<std::string, int64_t> errors_by_kind_;
  std::array<int64_t, kBuckets.size()> bucket_counts_{};
  int64_t latency_count_ = 0;
  double latency_sum_ = 0;
};

}  // namespace sd_serve
