#include "worker.h"

#include <algorithm>
#include <cstdio>

#include "png_bytes.h"

namespace sd_serve {
namespace {

std::string first_line(const std::exception& e) {
  std::string message = e.what();
  if (auto nl = message.find('\n'); nl != std::string::npos) message.resize(nl);
  return message;
}

sd::GenerateOptions options_of(const JobRequest& r) {
  sd::GenerateOptions opt;
  opt.width = r.width;
  opt.height = r.height;
  opt.steps = r.steps;
  opt.guidance_scale = r.guidance;
  opt.eta = r.eta;
  opt.scheduler = r.scheduler;
  opt.clip_skip = r.clip_skip;
  return opt;
}

}  // namespace

Worker::Worker(sd::Pipeline& pipeline, JobQueue& queue, Metrics& metrics, int preview_every)
    : pipeline_(pipeline), queue_(queue), metrics_(metrics), preview_every_(preview_every) {}

Worker::~Worker() {
  if (thread_.joinable()) thread_.join();
}

void Worker::start() { thread_ = std::thread([this] { loop(); }); }

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::loop() {
  for (;;) {
    auto batch = queue_.take_batch();
    if (batch.empty()) return;
    busy_ = true;
    run(batch);
    busy_ = false;
  }
}

// Batched text-to-image: each job's images come from its own seeds (generate_batch), so a job's
// answer is the same in any company. A batch that fails is rerun job by job, so one bad request
// fails only itself.
void Worker::run(const std::vector<std::shared_ptr<Job>>& jobs) {
  if (jobs.size() == 1 && jobs.front()->request.init_image) {
    run_alone(jobs.front());
    return;
  }
  std::vector<sd::BatchPrompt> items;
  for (const auto& job : jobs) {
    job->set_running(job->request.steps);
    for (int i = 0; i < job->request.n; ++i) {
      items.push_back({job->request.prompt, job->request.negative_prompt, job->request.seed + static_cast<uint64_t>(i)});
    }
  }
  // At most --max-batch images per generation, a job's own n images included: with --max-batch 1
  // every image is exactly the one `sd generate` makes for its seed (batched kernels round a few
  // values differently).
  const size_t chunk = static_cast<size_t>(std::max(1, queue_.max_batch_images()));
  const size_t chunks = (items.size() + chunk - 1) / chunk;
  sd::GenerateOptions opt = options_of(jobs.front()->request);
  opt.preview_every = preview_every_;
  // Where each job's images begin among the items.
  std::vector<size_t> first_item;
  size_t next_item = 0;
  for (const auto& job : jobs) {
    first_item.push_back(next_item);
    next_item += static_cast<size_t>(job->request.n);
  }
  size_t chunk_index = 0;
  opt.on_step = [&](const sd::StepInfo& step) {
    bool all_cancelled = true;
    const size_t begin = chunk_index * chunk, end = std::min(items.size(), begin + chunk);
    for (size_t k = 0; k < jobs.size(); ++k) {
      const auto& job = jobs[k];
      const int done = static_cast<int>(chunk_index) * step.count + step.index + 1;
      job->set_step(done, static_cast<int>(chunks) * step.count);
      all_cancelled = all_cancelled && job->cancel_requested;
      // The preview shows the job's first image in this chunk (its image 0 while that runs).
      const size_t first = std::max(first_item[k], begin), last = first_item[k] + static_cast<size_t>(job->request.n);
      if (step.preview.defined() && first < std::min(last, end)) {
        const auto row = static_cast<int64_t>(first - begin);
        job->set_preview(encode_png(sd::to_images(step.preview.narrow(0, row, 1)).front()), done);
      }
    }
    return all_cancelled || cancel_all_ ? sd::StepAction::kStop : sd::StepAction::kContinue;
  };
  try {
    std::vector<sd::Image> images;
    bool stopped = false;
    int width = 0, height = 0;
    int64_t unet_evaluations = 0;
    for (chunk_index = 0; chunk_index < chunks && !stopped; ++chunk_index) {
      const size_t begin = chunk_index * chunk, end = std::min(items.size(), begin + chunk);
      const std::vector<sd::BatchPrompt> part(items.begin() + static_cast<std::ptrdiff_t>(begin),
                                              items.begin() + static_cast<std::ptrdiff_t>(end));
      sd::GenerateResult result = pipeline_.generate_batch(part, opt);
      unet_evaluations += static_cast<int64_t>(result.timings.unet_s.size());
      stopped = result.stopped;
      width = result.width;
      height = result.height;
      for (auto& image : result.images) images.push_back(std::move(image));
    }
    metrics_.count_batch(static_cast<int64_t>(jobs.size()));
    metrics_.count_unet_evaluations(unet_evaluations);
    size_t next = 0;
    for (const auto& job : jobs) {
      if (stopped || job->cancel_requested) {
        job->set_cancelled();
        next += job->request.n;
        continue;
      }
      std::vector<std::string> pngs;
      for (int i = 0; i < job->request.n; ++i) pngs.push_back(encode_png(images.at(next++)));
      metrics_.count_images(job->request.n);
      job->set_done(std::move(pngs), width, height);
    }
  } catch (const std::exception& e) {
    if (jobs.size() == 1) {
      metrics_.count_error("generation");
      jobs.front()->set_failed(first_line(e));
      return;
    }
    for (const auto& job : jobs) run({job});
  }
}

// Image-to-image and inpainting: one generation per image, image i with seed + i, as for batched
// text-to-image (so a request's "seeds" mean the same everywhere).
void Worker::run_alone(const std::shared_ptr<Job>& job) {
  const JobRequest& r = job->request;
  job->set_running(r.steps);
  sd::GenerateOptions opt = options_of(r);
  opt.preview_every = preview_every_;
  opt.negative_prompt = r.negative_prompt;
  opt.init_image = r.init_image;
  opt.mask = r.mask;
  opt.strength = r.strength;
  std::vector<std::string> pngs;
  int width = 0, height = 0;
  try {
    for (int i = 0; i < r.n; ++i) {
      opt.seed = r.seed + static_cast<uint64_t>(i);
      opt.on_step = [&](const sd::StepInfo& step) {
        job->set_step(i * step.count + step.index + 1, r.n * step.count);
        if (step.preview.defined()) {
          job->set_preview(encode_png(sd::to_images(step.preview.narrow(0, 0, 1)).front()),
                           i * step.count + step.index + 1);
        }
        return job->cancel_requested || cancel_all_ ? sd::StepAction::kStop : sd::StepAction::kContinue;
      };
      sd::GenerateResult result = pipeline_.generate(r.prompt, opt);
      metrics_.count_batch(1);
      metrics_.count_unet_evaluations(static_cast<int64_t>(result.timings.unet_s.size()));
      if (result.stopped || job->cancel_requested) {
        job->set_cancelled();
        return;
      }
      pngs.push_back(encode_png(result.images.at(0)));
      width = result.width;
      height = result.height;
    }
    metrics_.count_images(static_cast<int64_t>(pngs.size()));
    job->set_done(std::move(pngs), width, height);
  } catch (const std::exception& e) {
    metrics_.count_error("generation");
    job->set_failed(first_line(e));
  }
}

}  // namespace sd_serve
