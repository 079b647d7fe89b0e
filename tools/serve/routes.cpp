#include "routes.h"

#include <httplib.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <random>

#include "base64.h"
#include "page.h"

namespace sd_serve {
namespace {

using nlohmann::json;

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& message, const std::string& field = "") {
  res.status = status;
  res.set_content(error_body(message, field), "application/json");
}

uint64_t random_seed() {
  static std::mutex mutex;
  static std::mt19937_64 engine{std::random_device{}()};
  std::lock_guard<std::mutex> lock(mutex);
  return engine() >> 11;  // below 2^53: JavaScript's numbers hold it exactly
}

std::string new_job_id() {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = std::random_device{}();
  char id[40];
  std::snprintf(id, sizeof id, "job-%08llx-%llu", static_cast<unsigned long long>(salt & 0xffffffffu),
                static_cast<unsigned long long>(++counter));
  return id;
}

// Fills the model's default size, so that requests that left it out batch with those that gave it.
void resolve_defaults(JobRequest& r, const ServeContext& c) {
  if (r.init_image) return;  // image-to-image takes the image's own size
  if (r.width == 0) r.width = c.default_width;
  if (r.height == 0) r.height = c.default_height;
}

// Queues a parsed request; on refusal the response is already set and the job is null.
std::shared_ptr<Job> submit(ServeContext& c, JobRequest request, httplib::Response& res) {
  if (c.draining) {
    send_error(res, 503, "the server is shutting down");
    return nullptr;
  }
  resolve_defaults(request, c);
  auto job = std::make_shared<Job>(new_job_id(), std::move(request));
  switch (c.queue.submit(job)) {
    case JobQueue::Submit::kAccepted: return job;
    case JobQueue::Submit::kFull:
      c.metrics.count_error("queue_full");
      res.set_header("Retry-After", std::to_string(c.retry_after_s));
      send_error(res, 503, "the queue is full (" + std::to_string(c.queue.capacity()) + " jobs): retry later");
      return nullptr;
    case JobQueue::Submit::kClosed: send_error(res, 503, "the server is shutting down"); return nullptr;
  }
  return nullptr;
}

// Parses with `parse`, answering a bad request with its 4xx and the field.
template <typename Parse>
bool parse_body(ServeContext& c, const httplib::Request& req, httplib::Response& res, Parse parse, JobRequest& out) {
  try {
    out = parse(req.body, c.limits, random_seed());
    return true;
  } catch (const RequestError& e) {
    c.metrics.count_error("bad_request");
    send_error(res, e.status, e.what(), e.field);
    return false;
  }
}

// Waits for a synchronous request's job; false (and a 504 set) if it did not finish in time.
bool wait_for(ServeContext& c, Job& job, httplib::Response& res) {
  if (job.wait_finished(c.request_timeout)) return true;
  job.cancel_requested = true;
  send_error(res, 504, "the job did not finish within " + std::to_string(c.request_timeout.count()) + " s");
  return false;
}

void answer_finished(ServeContext& c, const Job& job, httplib::Response& res) {
  c.metrics.observe_latency(std::chrono::duration<double>(Clock::now() - job.submitted).count());
  res.set_header("X-Job-Id", job.id);
  if (job.state() == JobState::kFailed) {
    send_error(res, 500, "generation failed: " + job.error());
  } else if (job.state() == JobState::kCancelled) {
    send_error(res, 409, "the job was cancelled");
  }
}

thread_local Clock::time_point request_start;

}  // namespace

void install_routes(httplib::Server& server, ServeContext& c) {
  server.set_pre_routing_handler([&c](const httplib::Request& req, httplib::Response& res) {
    request_start = Clock::now();
    const bool open = req.path == "/" || req.path == "/health";
    if (!c.api_key.empty() && !open && req.get_header_value("Authorization") != "Bearer " + c.api_key) {
      res.set_header("WWW-Authenticate", "Bearer");
      send_error(res, 401, "missing or wrong API key (send Authorization: Bearer KEY)", "Authorization");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // httplib's own refusals (413 for a large body, 404, 400 on a broken request) get a JSON body too.
  server.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    const std::string what = res.status == 404   ? "no such endpoint: " + req.method + " " + req.path
                             : res.status == 413 ? "the request body is larger than the limit"
                                                 : "bad request (HTTP " + std::to_string(res.status) + ")";
    res.set_content(error_body(what, res.status == 413 ? "body" : ""), "application/json");
  });
  server.set_logger([&c](const httplib::Request& req, const httplib::Response& res) {
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - request_start).count();
    c.metrics.count_request(res.status);
    std::fprintf(stderr, "%s %s %s %d %.1fms\n", req.remote_addr.c_str(), req.method.c_str(), req.path.c_str(),
                 res.status, ms);
  });

  server.Get("/", [](const httplib::Request&, httplib::Response& res) { res.set_content(kPageHtml, "text/html"); });
  server.Get("/health", [&c](const httplib::Request&, httplib::Response& res) {
    const bool ok = !c.draining;
    send_json(res, ok ? 200 : 503,
              {{"status", ok ? "ok" : "draining"}, {"model", c.model}, {"queue", c.queue.size()}});
  });
  server.Get("/metrics", [&c](const httplib::Request&, httplib::Response& res) {
    res.set_content(c.metrics.render(c.queue.size(), c.queue.capacity(), c.running()), "text/plain; version=0.0.4");
  });

  // OpenAI's images API: synchronous, the images in the answer.
  server.Post("/v1/images/generations", [&c](const httplib::Request& req, httplib::Response& res) {
    JobRequest request;
    if (!parse_body(c, req, res, parse_openai_request, request)) return;
    auto job = submit(c, std::move(request), res);
    if (!job || !wait_for(c, *job, res)) return;
    answer_finished(c, *job, res);
    if (job->state() != JobState::kDone) return;
    json data = json::array();
    const auto pngs = job->pngs();
    for (size_t i = 0; i < pngs.size(); ++i) {
      data.push_back({{"b64_json", base64_encode(pngs[i])}, {"revised_prompt", job->request.prompt},
                      {"seed", job->request.seed + i}});
    }
    send_json(res, 200, {{"created", static_cast<int64_t>(std::time(nullptr))}, {"data", data}, {"id", job->id}});
  });

  // libsd's own API: queued, answered at once with the job's id (202); ?wait=1 waits for the images.
  server.Post("/v1/generate", [&c](const httplib::Request& req, httplib::Response& res) {
    JobRequest request;
    if (!parse_body(c, req, res, parse_generate_request, request)) return;
    auto job = submit(c, std::move(request), res);
    if (!job) return;
    if (req.get_param_value("wait") == "1") {
      if (!wait_for(c, *job, res)) return;
      answer_finished(c, *job, res);
      if (job->state() == JobState::kDone) send_json(res, 200, job->to_json(true));
      return;
    }
    json body = job->to_json(false);
    body["events"] = "/v1/jobs/" + job->id + "/events";
    send_json(res, 202, body);
  });

  server.Get(R"(/v1/jobs/([A-Za-z0-9-]+))", [&c](const httplib::Request& req, httplib::Response& res) {
    auto job = c.queue.find(req.matches[1]);
    if (!job) return send_error(res, 404, "no such job: " + std::string(req.matches[1]), "id");
    send_json(res, 200, job->to_json(true));
  });
  server.Delete(R"(/v1/jobs/([A-Za-z0-9-]+))", [&c](const httplib::Request& req, httplib::Response& res) {
    if (!c.queue.cancel(req.matches[1])) return send_error(res, 404, "no such job: " + std::string(req.matches[1]), "id");
    auto job = c.queue.find(req.matches[1]);
    // A running job stops at its next step: wait a little so the answer usually says "cancelled".
    if (job) job->wait_finished(std::chrono::milliseconds(2000));
    send_json(res, 200, job ? job->to_json(false) : json{{"id", std::string(req.matches[1])}});
  });

  // The latest preview of a job's first image (sd serve --preview-every N), as a PNG.
  server.Get(R"(/v1/jobs/([A-Za-z0-9-]+)/preview)", [&c](const httplib::Request& req, httplib::Response& res) {
    auto job = c.queue.find(req.matches[1]);
    if (!job) return send_error(res, 404, "no such job: " + std::string(req.matches[1]), "id");
    if (c.preview_every <= 0) return send_error(res, 404, "previews are off: start sd serve with --preview-every N");
    const std::string png = job->preview_png();
    if (png.empty()) return send_error(res, 404, "no preview yet: the first comes after step " +
                                                     std::to_string(c.preview_every));
    res.set_header("Cache-Control", "no-store");
    res.set_content(png, "image/png");
  });

  // Server-Sent Events: "progress" at every step (step, steps, eta_s), then one "done", "failed" or
  // "cancelled" with the job's status (fetch the images from /v1/jobs/{id}).
  server.Get(R"(/v1/jobs/([A-Za-z0-9-]+)/events)", [&c](const httplib::Request& req, httplib::Response& res) {
    auto job = c.queue.find(req.matches[1]);
    if (!job) return send_error(res, 404, "no such job: " + std::string(req.matches[1]), "id");
    res.set_header("Cache-Control", "no-cache");
    auto seen = std::make_shared<uint64_t>(~uint64_t{0});
    res.set_chunked_content_provider("text/event-stream", [job, seen](size_t, httplib::DataSink& sink) {
      const uint64_t now = job->wait_change(*seen, std::chrono::milliseconds(1000));
      if (now == *seen) {
        static const std::string kComment = ": waiting\n\n";  // so that a vanished client is noticed
        return sink.write(kComment.data(), kComment.size());
      }
      *seen = now;
      const bool finished = job->finished();
      const std::string name = finished ? state_name(job->state()) : "progress";
      const std::string event = "event: " + name + "\ndata: " + job->to_json(false).dump() + "\n\n";
      if (!sink.write(event.data(), event.size())) return false;
      if (finished) sink.done();
      return true;
    });
  });
}

}  // namespace sd_serve
