#pragma once
// One generation request as the server tracks it, from the queue to its images, and the bounded
// queue that holds them. Jobs are shared between the HTTP threads (which wait on them or stream
// their progress) and the one worker thread that runs the pipeline.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "request.h"

namespace sd_serve {

using Clock = std::chrono::steady_clock;

enum class JobState { kQueued, kRunning, kDone, kFailed, kCancelled };
const char* state_name(JobState state);

class Job {
 public:
  Job(std::string id, JobRequest request);

  const std::string id;
  const JobRequest request;
  const Clock::time_point submitted;
  std::atomic<bool> cancel_requested{false};

  JobState state() const;
  bool finished() const;
  // Blocks until the job has finished or `timeout` passed; true if finished.
  bool wait_finished(std::chrono::milliseconds timeout) const;
  // Blocks until something changed since `seen` (a version number) or `timeout` passed; returns the
  // version now. For the event stream.
  uint64_t wait_change(uint64_t seen, std::chrono::milliseconds timeout) const;
  uint64_t version() const;

  // The worker's side.
  void set_running(int steps);
  void set_step(int done, int steps);
  void set_done(std::vector<std::string> pngs, int width, int height);
  void set_failed(const std::string& message);
  void set_cancelled();
  // The latest preview (sd serve --preview-every): a PNG of the job's first image in the making,
  // after `step` of its steps.
  void set_preview(std::string png, int step);
  // Empty before the first preview.
  std::string preview_png() const;

  // {"id", "status", "step", "steps", "eta_s", "seeds", ...}; with images: "images" as base64 PNGs.
  nlohmann::json to_json(bool with_images) const;
  std::vector<std::string> pngs() const;
  std::string error() const;

 private:
  void changed_locked();
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  uint64_t version_ = 0;
  JobState state_ = JobState::kQueued;
  int step_ = 0, steps_ = 0, width_ = 0, height_ = 0;
  Clock::time_point started_{}, finished_at_{};
  std::vector<std::string> pngs_;
  std::string error_;
  std::string preview_png_;
  int preview_step_ = 0;
};

// Whether two requests can run as one batched generation: text-to-image with the same size, steps,
// scheduler, guidance scale (one scale for the whole batch), eta and CLIP skip.
bool batchable(const JobRequest& a, const JobRequest& b);

class JobQueue {
 public:
  JobQueue(size_t capacity, int max_batch_images);
  // --max-batch: the most images one generation runs.
  int max_batch_images() const { return max_batch_images_; }
  enum class Submit { kAccepted, kFull, kClosed };
  Submit submit(const std::shared_ptr<Job>& job);
  // Blocks for work: the oldest job and the compatible ones waiting behind it (up to max_batch
  // images in all). Empty once the queue is closed and drained.
  std::vector<std::shared_ptr<Job>> take_batch();
  // A queued job leaves the queue at once; a running one is stopped at its next step.
  bool cancel(const std::string& id);
  // No more submissions; take_batch drains what is queued. With cancel_queued, that is cancelled.
  void close(bool cancel_queued);
  std::shared_ptr<Job> find(const std::string& id) const;
  size_t size() const;
  size_t capacity() const { return capacity_; }

 private:
  void remember_locked(const std::shared_ptr<Job>& job);
  const size_t capacity_;
  const int max_batch_images_;
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::map<std::string, std::shared_ptr<Job>> known_;  // recent jobs by id, for GET /v1/jobs/{id}
  std::deque<std::string> known_order_;
  bool closed_ = false;
};

}  // namespace sd_serve
