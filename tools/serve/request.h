#pragma once
// What a client asks of `sd serve`, parsed and checked from a JSON body. A bad request becomes a
// RequestError naming the field, never a crash: the server answers it with a 4xx JSON body.
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "sd/image.h"
#include "sd/scheduler.h"

namespace sd_serve {

struct Limits {
  int max_side = 1024;   // width and height at most this
  int max_images = 8;    // n per request
  int max_steps = 150;
  size_t max_body_bytes = 8u << 20;
};

// Input errors: an HTTP status (400, 413, 422...) and the JSON field at fault.
struct RequestError : std::runtime_error {
  RequestError(int status, std::string field, const std::string& message)
      : std::runtime_error(message), status(status), field(std::move(field)) {}
  int status;
  std::string field;
};

struct JobRequest {
  std::string prompt, negative_prompt;
  int width = 0, height = 0;            // 0: the model's default
  int steps = 20;
  int n = 1;                            // images; image i uses seed + i
  double guidance = 7.5, eta = 0.0;
  std::optional<sd::SchedulerKind> scheduler;
  uint64_t seed = 0;
  int clip_skip = 0;
  std::optional<sd::Image> init_image, mask;
  std::optional<double> strength;
};

// POST /v1/images/generations: OpenAI's images API (prompt, n, size "WxH", response_format
// "b64_json"; model, quality, style and user are accepted and ignored) plus libsd's fields.
JobRequest parse_openai_request(const std::string& body, const Limits& limits, uint64_t default_seed);
// POST /v1/generate: the options of `sd generate` (width, height, steps, guidance, seed, scheduler,
// eta, clip_skip, n, init_image / mask as base64 PNG or JPEG, strength).
JobRequest parse_generate_request(const std::string& body, const Limits& limits, uint64_t default_seed);

// The JSON error body: {"error": {"message", "type", "param"}} as OpenAI's API writes it.
std::string error_body(const std::string& message, const std::string& field = "");

}  // namespace sd_serve
