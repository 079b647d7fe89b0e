#include "job.h"

#include "base64.h"

namespace sd_serve {

const char* state_name(JobState state) {
  switch (state) {
    case JobState::kQueued: return "queued";
    case JobState::kRunning: return "running";
    case JobState::kDone: return "done";
    case JobState::kFailed: return "failed";
    case JobState::kCancelled: return "cancelled";
  }
  return "unknown";
}

Job::Job(std::string id_, JobRequest request_)
    : id(std::move(id_)), request(std::move(request_)), submitted(Clock::now()) {}

JobState Job::state() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return state_;
}

bool Job::finished() const {
  const JobState s = state();
  return s == JobState::kDone || s == JobState::kFailed || s == JobState::kCancelled;
}

bool Job::wait_finished(std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] {
    return state_ == JobState::kDone || state_ == JobState::kFailed || state_ == JobState::kCancelled;
  });
}

uint64_t Job::wait_change(uint64_t seen, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait_for(lock, timeout, [&] { return version_ != seen; });
  return version_;
}

uint64_t Job::version() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return version_;
}

void Job::changed_locked() {
  ++version_;
  changed_.notify_all();
}

void Job::set_running(int steps) {
  std::lock_guard<std::mutex> lock(mutex_);
  state_ = JobState::kRunning;
  steps_ = steps;
  started_ = Clock::now();
  changed_locked();
}

void Job::set_step(int done, int steps) {
  std::lock_guard<std::mutex> lock(mutex_);
  step_ = done;
  steps_ = steps;
  changed_locked();
}

void Job::set_done(std::vector<std::string> pngs, int width, int height) {
  std::lock_guard<std::mutex> lock(mutex_);
  state_ = JobState::kDone;
  pngs_ = std::move(pngs);
  width_ = width;
  height_ = height;
  finished_at_ = Clock::now();
  changed_locked();
}

void Job::set_failed(const std::string& message) {
  std::lock_guard<std::mutex> lock(mutex_);
  state_ = JobState::kFailed;
  error_ = message;
  finished_at_ = Clock::now();
  changed_locked();
}

void Job::set_cancelled() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (state_ == JobState::kDone || state_ == JobState::kFailed) return;
  state_ = JobState::kCancelled;
  finished_at_ = Clock::now();
  changed_locked();
}

void Job::set_preview(std::string png, int step) {
  std::lock_guard<std::mutex> lock(mutex_);
  preview_png_ = std::move(png);
  preview_step_ = step;
  changed_locked();
}

std::string Job::preview_png() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return preview_png_;
}

std::vector<std::string> Job::pngs() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return pngs_;
}

std::string Job::error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return error_;
}

nlohmann::json Job::to_json(bool with_images) const {
  std::lock_guard<std::mutex> lock(mutex_);
  nlohmann::json j = {{"id", id}, {"status", state_name(state_)}, {"step", step_}, {"steps", steps_},
                      {"prompt", request.prompt}, {"n", request.n}};
  nlohmann::json seeds = nlohmann::json::array();
  for (int i = 0; i < request.n; ++i) seeds.push_back(request.seed + static_cast<uint64_t>(i));
  j["seeds"] = seeds;
  if (state_ == JobState::kRunning && step_ > 0) {
    const double elapsed = std::chrono::duration<double>(Clock::now() - started_).count();
    j["eta_s"] = elapsed / step_ * (steps_ - step_);
  }
  if (!error_.empty()) j["error"] = error_;
  if (preview_step_ > 0) {
    j["preview_step"] = preview_step_;
    j["preview"] = "/v1/jobs/" + id + "/preview";
  }
  if (state_ == JobState::kDone) {
    j["width"] = width_;
    j["height"] = height_;
    j["seconds"] = std::chrono::duration<double>(finished_at_ - submitted).count();
    if (with_images) {
      nlohmann::json images = nlohmann::json::array();
      for (const auto& png : pngs_) images.push_back(base64_encode(png));
      j["images"] = images;
    }
  }
  return j;
}

bool batchable(const JobRequest& a, const JobRequest& b) {
  return !a.init_image && !b.init_image && a.width == b.width && a.height == b.height && a.steps == b.steps &&
         a.scheduler == b.scheduler && a.guidance == b.guidance && a.eta == b.eta && a.clip_skip == b.clip_skip;
}

JobQueue::JobQueue(size_t capacity, int max_batch_images) : capacity_(capacity), max_batch_images_(max_batch_images) {}

void JobQueue::remember_locked(const std::shared_ptr<Job>& job) {
  // Finished jobs stay readable for a while; the oldest are forgotten beyond a bound.
  constexpr size_t kRemembered = 512;
  known_[job->id] = job;
  known_order_.push_back(job->id);
  while (known_order_.size() > kRemembered) {
    auto it = known_.find(known_order_.front());
    if (it != known_.end() && it->second->finished()) known_.erase(it);
    known_order_.pop_front();
  }
}

JobQueue::Submit JobQueue::submit(const std::shared_ptr<Job>& job) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (closed_) return Submit::kClosed;
  if (queue_.size() >= capacity_) return Submit::kFull;
  queue_.push_back(job);
  remember_locked(job);
  ready_.notify_one();
  return Submit::kAccepted;
}

std::vector<std::shared_ptr<Job>> JobQueue::take_batch() {
  std::unique_lock<std::mutex> lock(mutex_);
  ready_.wait(lock, [&] { return !queue_.empty() || closed_; });
  std::vector<std::shared_ptr<Job>> batch;
  if (queue_.empty()) return batch;
  batch.push_back(queue_.front());
  queue_.pop_front();
  int images = batch.front()->request.n;
  const JobRequest& first = batch.front()->request;
  for (auto it = queue_.begin(); it != queue_.end() && images < max_batch_images_;) {
    if (batchable(first, (*it)->request) && images + (*it)->request.n <= max_batch_images_) {
      images += (*it)->request.n;
      batch.push_back(*it);
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
  return batch;
}

bool JobQueue::cancel(const std::string& id) {
  std::shared_ptr<Job> job;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = known_.find(id);
    if (it == known_.end()) return false;
    job = it->second;
    job->cancel_requested = true;
    for (auto q = queue_.begin(); q != queue_.end(); ++q) {
      if (*q == job) {
        queue_.erase(q);
        break;
      }
    }
  }
  if (job->state() == JobState::kQueued) job->set_cancelled();
  return true;
}

void JobQueue::close(bool cancel_queued) {
  std::deque<std::shared_ptr<Job>> dropped;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
    if (cancel_queued) dropped.swap(queue_);
    ready_.notify_all();
  }
  for (auto& job : dropped) {
    job->cancel_requested = true;
    job->set_cancelled();
  }
}

std::shared_ptr<Job> JobQueue::find(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = known_.find(id);
  return it == known_.end() ? nullptr : it->second;
}

size_t JobQueue::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.size();
}

}  // namespace sd_serve
