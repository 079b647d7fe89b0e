#include "request.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "base64.h"

namespace sd_serve {
namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& field, const std::string& message, int status = 400) {
  throw RequestError(status, field, field + ": " + message);
}

json parse_object(const std::string& body, const Limits& limits) {
  if (body.size() > limits.max_body_bytes) {
    bad("body", "larger than the limit of " + std::to_string(limits.max_body_bytes) + " bytes", 413);
  }
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    bad("body", std::string("malformed JSON (") + e.what() + ")");
  }
  if (!j.is_object()) bad("body", std::string("expected a JSON object, got ") + j.type_name());
  return j;
}

void reject_unknown(const json& j, const std::set<std::string>& known) {
  for (auto& [key, value] : j.items()) {
    if (!known.count(key)) bad(key, "unknown field");
  }
}

std::string get_string(const json& j, const char* key, bool required = false) {
  if (!j.contains(key)) {
    if (required) bad(key, "missing (a string is required)");
    return {};
  }
  if (!j[key].is_string()) bad(key, std::string("expected a string, got ") + j[key].type_name());
  return j[key].get<std::string>();
}

int64_t get_int(const json& j, const char* key, int64_t fallback, int64_t lo, int64_t hi) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  const json& v = j[key];
  if (!v.is_number_integer()) bad(key, std::string("expected an integer, got ") + v.dump());
  const int64_t x = v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX) ? INT64_MAX : v.get<int64_t>();
  if (x < lo || x > hi) bad(key, "expected " + std::to_string(lo) + ".." + std::to_string(hi) + ", got " + v.dump(), 422);
  return x;
}

double get_number(const json& j, const char* key, double fallback, double lo, double hi) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  const json& v = j[key];
  if (!v.is_number()) bad(key, std::string("expected a number, got ") + v.dump());
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi) {
    bad(key, "expected a number in [" + json(lo).dump() + ", " + json(hi).dump() + "], got " + v.dump(), 422);
  }
  return x;
}

void check_side(const char* field, int v, const Limits& limits) {
  if (v <= 0 || v % 8 != 0 || v > limits.max_side) {
    bad(field, "expected a positive multiple of 8 up to " + std::to_string(limits.max_side) + ", got " +
                   std::to_string(v), 422);
  }
}

// The fields both endpoints share: libsd's generation settings.
void read_common(const json& j, const Limits& limits, uint64_t default_seed, JobRequest& r) {
  r.prompt = get_string(j, "prompt", true);
  if (r.prompt.empty()) bad("prompt", "must not be empty", 422);
  r.negative_prompt = get_string(j, "negative_prompt");
  r.steps = static_cast<int>(get_int(j, "steps", r.steps, 1, limits.max_steps));
  r.n = static_cast<int>(get_int(j, "n", 1, 1, limits.max_images));
  r.guidance = get_number(j, "guidance", r.guidance, 0.0, 100.0);
  if (j.contains("seed") && !j["seed"].is_null()) {
    if (!j["seed"].is_number_unsigned()) bad("seed", "expected a non-negative integer, got " + j["seed"].dump());
    r.seed = j["seed"].get<uint64_t>();
  } else {
    r.seed = default_seed;
  }
  const std::string scheduler = get_string(j, "scheduler");
  if (!scheduler.empty()) {
    try {
      r.scheduler = sd::scheduler_kind_from_name(scheduler);
    } catch (const std::exception&) {
      bad("scheduler", "unknown scheduler '" + scheduler + "' (pndm, ddim, euler, euler-a, dpm++2m, dpm++2m-karras, lms)",
          422);
    }
  }
}

std::optional<sd::Image> get_image(const json& j, const char* key) {
  const std::string text = get_string(j, key);
  if (text.empty()) return std::nullopt;
  std::string bytes;
  if (!base64_decode(text, bytes)) bad(key, "not valid base64");
  try {
    return sd::decode_image(bytes.data(), bytes.size(), key);
  } catch (const std::exception& e) {
    bad(key, std::string("not a PNG or JPEG image (") + e.what() + ")", 422);
  }
}

}  // namespace

std::string error_body(const std::string& message, const std::string& field) {
  json e = {{"message", message}, {"type", "invalid_request_error"}};
  e["param"] = field.empty() ? json(nullptr) : json(field);
  return json{{"error", e}}.dump();
}

JobRequest parse_openai_request(const std::string& body, const Limits& limits, uint64_t default_seed) {
  const json j = parse_object(body, limits);
  reject_unknown(j, {"prompt", "n", "size", "response_format", "model", "quality", "style", "user", "negative_prompt",
                     "steps", "guidance", "scheduler", "seed"});
  JobRequest r;
  read_common(j, limits, default_seed, r);
  const std::string format = get_string(j, "response_format");
  if (!format.empty() && format != "b64_json") {
    bad("response_format", "only \"b64_json\" is served (no image URLs), got \"" + format + "\"", 422);
  }
  const std::string size = get_string(j, "size");
  if (!size.empty()) {
    int w = 0, h = 0;
    char tail = 0;
    if (std::sscanf(size.c_str(), "%dx%d%c", &w, &h, &tail) != 2) bad("size", "expected \"WIDTHxHEIGHT\", got \"" + size + "\"");
    check_side("size", w, limits);
    check_side("size", h, limits);
    r.width = w;
    r.height = h;
  }
  return r;
}

JobRequest parse_generate_request(const std::string& body, const Limits& limits, uint64_t default_seed) {
  const json j = parse_object(body, limits);
  reject_unknown(j, {"prompt", "negative_prompt", "width", "height", "steps", "n", "guidance", "scheduler", "seed", "eta",
                     "clip_skip", "init_image", "mask", "strength"});
  JobRequest r;
  read_common(j, limits, default_seed, r);
  if (j.contains("width")) {
    r.width = static_cast<int>(get_int(j, "width", 0, INT32_MIN, INT32_MAX));
    check_side("width", r.width, limits);
  }
  if (j.contains("height")) {
    r.height = static_cast<int>(get_int(j, "height", 0, INT32_MIN, INT32_MAX));
    check_side("height", r.height, limits);
  }
  r.eta = get_number(j, "eta", 0.0, 0.0, 1.0);
  r.clip_skip = static_cast<int>(get_int(j, "clip_skip", 0, 0, 1));
  r.init_image = get_image(j, "init_image");
  r.mask = get_image(j, "mask");
  if (r.mask && !r.init_image) bad("mask", "needs an init_image (inpainting repaints part of one)", 422);
  if (j.contains("strength")) {
    if (!r.init_image) bad("strength", "applies to image-to-image only (no init_image given)", 422);
    r.strength = get_number(j, "strength", 0.8, 0.0, 1.0);
  }
  if (r.init_image && (r.init_image->width > limits.max_side || r.init_image->height > limits.max_side)) {
    bad("init_image", "larger than " + std::to_string(limits.max_side) + " pixels a side", 422);
  }
  return r;
}

}  // namespace sd_serve
