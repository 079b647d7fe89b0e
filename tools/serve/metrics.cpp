#include "metrics.h"

#include <sstream>

namespace sd_serve {

void Metrics::count_request(int status) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_by_status_[status];
}

void Metrics::count_error(const std::string& kind) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++errors_by_kind_[kind];
}

void Metrics::observe_latency(double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    if (seconds <= kBuckets[i]) ++bucket_counts_[i];
  }
  ++latency_count_;
  latency_sum_ += seconds;
}

std::string Metrics::render(size_t queue_length, size_t queue_capacity, bool running) const {
  std::ostringstream o;
  o << "# HELP sd_queue_length Jobs waiting for the pipeline.\n# TYPE sd_queue_length gauge\n"
    << "sd_queue_length " << queue_length << "\n";
  o << "# HELP sd_queue_capacity Jobs the queue holds before answering 503.\n# TYPE sd_queue_capacity gauge\n"
    << "sd_queue_capacity " << queue_capacity << "\n";
  o << "# HELP sd_running Whether a generation is running.\n# TYPE sd_running gauge\n"
    << "sd_running " << (running ? 1 : 0) << "\n";
  o << "# HELP sd_images_total Images generated.\n# TYPE sd_images_total counter\n"
    << "sd_images_total " << images_.load() << "\n";
  o << "# HELP sd_unet_evaluations_total UNet evaluations (one per step of a batched generation).\n"
    << "# TYPE sd_unet_evaluations_total counter\nsd_unet_evaluations_total " << unet_evaluations_.load() << "\n";
  o << "# HELP sd_batches_total Pipeline runs.\n# TYPE sd_batches_total counter\n"
    << "sd_batches_total " << batches_.load() << "\n";
  o << "# HELP sd_batched_jobs_total Jobs run, summed over pipeline runs.\n# TYPE sd_batched_jobs_total counter\n"
    << "sd_batched_jobs_total " << batched_jobs_.load() << "\n";
  std::lock_guard<std::mutex> lock(mutex_);
  o << "# HELP sd_http_requests_total HTTP requests answered, by status.\n# TYPE sd_http_requests_total counter\n";
  for (auto& [status, n] : requests_by_status_) o << "sd_http_requests_total{code=\"" << status << "\"} " << n << "\n";
  o << "# HELP sd_errors_total Failed requests, by kind.\n# TYPE sd_errors_total counter\n";
  for (auto& [kind, n] : errors_by_kind_) o << "sd_errors_total{kind=\"" << kind << "\"} " << n << "\n";
  o << "# HELP sd_request_latency_seconds Generation requests, from submission to their images.\n"
    << "# TYPE sd_request_latency_seconds histogram\n";
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    o << "sd_request_latency_seconds_bucket{le=\"" << kBuckets[i] << "\"} " << bucket_counts_[i] << "\n";
  }
  o << "sd_request_latency_seconds_bucket{le=\"+Inf\"} " << latency_count_ << "\n"
    << "sd_request_latency_seconds_sum " << latency_sum_ << "\n"
    << "sd_request_latency_seconds_count " << latency_count_ << "\n";
  return o.str();
}

}  // namespace sd_serve
