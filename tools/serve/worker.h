#pragma once
// The one thread that owns the pipeline: takes batches from the queue and runs them.
#include <atomic>
#include <thread>

#include "job.h"
#include "metrics.h"
#include "sd/pipeline.h"

namespace sd_serve {

class Worker {
 public:
  // preview_every > 0: a preview PNG of each job's first image every this many steps (Job::preview_png).
  Worker(sd::Pipeline& pipeline, JobQueue& queue, Metrics& metrics, int preview_every = 0);
  ~Worker();
  void start();
  // Waits for the queue to drain (close it first).
  void join();
  // Stops the running generation at its next step (shutdown).
  void cancel_running() { cancel_all_ = true; }
  bool busy() const { return busy_; }

 private:
  void loop();
  void run(const std::vector<std::shared_ptr<Job>>& jobs);
  void run_alone(const std::shared_ptr<Job>& job);
  sd::Pipeline& pipeline_;
  JobQueue& queue_;
  Metrics& metrics_;
  const int preview_every_;
  std::atomic<bool> cancel_all_{false}, busy_{false};
  std::thread thread_;
};

}  // namespace sd_serve
