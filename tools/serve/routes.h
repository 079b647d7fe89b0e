#pragma once
// The HTTP API of `sd serve` on an httplib::Server: routes, the API key check, the request log.
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "job.h"
#include "metrics.h"
#include "request.h"

namespace httplib {
class Server;
}

namespace sd_serve {

struct ServeContext {
  ServeContext(JobQueue& queue, Metrics& metrics) : queue(queue), metrics(metrics) {}
  JobQueue& queue;
  Metrics& metrics;
  Limits limits;
  std::string api_key;                // empty: no key needed
  std::string model;                  // for /health
  int default_width = 512, default_height = 512;
  std::atomic<bool> draining{false};  // SIGTERM: new work is refused with 503
  std::function<bool()> running = [] { return false; };  // a generation is running (for /metrics)
  int retry_after_s = 2;
  int preview_every = 0;              // sd serve --preview-every (0: no previews)
  std::chrono::seconds request_timeout{600};  // the longest a synchronous request waits for its images
};

void install_routes(httplib::Server& server, ServeContext& context);

}  // namespace sd_serve
