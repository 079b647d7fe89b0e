// `sd serve` as clients see it: a real server process on a free loopback port, the tiny golden
// pipeline, httplib's client. Every request has a timeout; the server is killed at the end.
// LibTorch (through sd/image.h) before Catch: glog's CHECK must not replace Catch's.
#include "sd/image.h"

#include <httplib.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <future>
#include <nlohmann/json.hpp>
#include <regex>

#include "serve/base64.h"
#include "serve_process.h"

using nlohmann::json;
using serve_test::ServeProcess;

namespace {

httplib::Client client(const ServeProcess& server) {
  httplib::Client c("127.0.0.1", server.port());
  c.set_connection_timeout(5, 0);
  c.set_read_timeout(120, 0);
  c.set_write_timeout(10, 0);
  return c;
}

sd::Image png_of(const std::string& b64) {
  std::string bytes;
  REQUIRE(sd_serve::base64_decode(b64, bytes));
  REQUIRE(bytes.size() > 8);
  CHECK(bytes.compare(1, 3, "PNG") == 0);
  return sd::decode_image(bytes.data(), bytes.size(), "answer");
}

httplib::Result post(httplib::Client& c, const std::string& path, const json& body) {
  return c.Post(path.c_str(), body.dump(), "application/json");
}

// The value of a Prometheus sample line "name value" (or -1).
double metric(const std::string& text, const std::string& name) {
  std::smatch m;
  if (std::regex_search(text, m, std::regex("\n" + name + " ([0-9.e+]+)"))) return std::stod(m[1]);
  return -1;
}

}  // namespace

TEST_CASE("sd serve: OpenAI images API, health, metrics, request log", "[serve][cli][parity]") {
  ServeProcess server({"--model", serve_test::tiny_model(), "--threads", "2"});
  REQUIRE(server.port() > 0);
  auto c = client(server);

  auto health = c.Get("/health");
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(json::parse(health->body)["status"] == "ok");

  auto res = post(c, "/v1/images/generations",
                  {{"prompt", "a red fox"}, {"n", 2}, {"size", "64x48"}, {"response_format", "b64_json"},
                   {"steps", 2}, {"seed", 5}});
  REQUIRE(res);
  INFO(res->body.substr(0, 300));
  REQUIRE(res->status == 200);
  const json answer = json::parse(res->body);
  REQUIRE(answer["data"].size() == 2);
  for (const auto& item : answer["data"]) {
    const sd::Image image = png_of(item["b64_json"]);
    CHECK(image.width == 64);
    CHECK(image.height == 48);
  }
  CHECK(answer["data"][1]["seed"] == 6);

  // The same request again gives the same image: seeds are the request's own.
  auto again = post(c, "/v1/images/generations", {{"prompt", "a red fox"}, {"size", "64x48"}, {"steps", 2}, {"seed", 5}});
  REQUIRE(again);
  REQUIRE(again->status == 200);
  CHECK(json::parse(again->body)["data"][0]["b64_json"] == answer["data"][0]["b64_json"]);

  auto metrics = c.Get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->status == 200);
  INFO(metrics->body);
  CHECK(metric(metrics->body, "sd_images_total") == 3);
  // PNDM: steps + 1 evaluations per generation; at the default --max-batch 1 the n=2 request runs as
  // two generations, so three in all.
  CHECK(metric(metrics->body, "sd_unet_evaluations_total") == 9);
  CHECK(metric(metrics->body, "sd_request_latency_seconds_count") == 2);
  CHECK(metric(metrics->body, "sd_queue_length") == 0);

  CHECK(server.stop(SIGTERM, std::chrono::seconds(30)) == 0);
  const std::string log = server.log();
  INFO(log);
  CHECK(std::regex_search(log, std::regex("POST /v1/images/generations 200 [0-9.]+ms")));
  CHECK(std::regex_search(log, std::regex("GET /health 200 [0-9.]+ms")));
}

TEST_CASE("sd serve: bad requests get a 4xx naming the field, and the server goes on", "[serve][cli][parity]") {
  ServeProcess server({"--model", serve_test::tiny_model(), "--threads", "2", "--max-images", "2", "--max-size", "128",
                       "--max-body-kib", "4"});
  REQUIRE(server.port() > 0);
  auto c = client(server);
  struct Case {
    std::string body;
    int status;
    std::string field;
  };
  const std::vector<Case> cases{
      {"{\"prompt\": ", 400, "body"},
      {"[1, 2]", 400, "body"},
      {R"({"prompt": "x", "colour": "red"})", 400, "colour"},
      {R"({"n": 1})", 400, "prompt"},
      {R"({"prompt": 3})", 400, "prompt"},
      {R"({"prompt": "x", "size": "60x64"})", 422, "size"},
      {R"({"prompt": "x", "size": "1024x1024"})", 422, "size"},
      {R"({"prompt": "x", "size": "big"})", 400, "size"},
      {R"({"prompt": "x", "n": 3})", 422, "n"},
      {R"({"prompt": "x", "steps": 0})", 422, "steps"},
      {R"({"prompt": "x", "seed": -1})", 400, "seed"},
      {R"({"prompt": "x", "scheduler": "nope"})", 422, "scheduler"},
      {R"({"prompt": "x", "response_format": "url"})", 422, "response_format"},
      {"{\"prompt\": \"" + std::string(8000, 'a') + "\"}", 413, "body"},
  };
  for (const Case& k : cases) {
    INFO(k.body.substr(0, 80));
    auto res = c.Post("/v1/images/generations", k.body, "application/json");
    REQUIRE(res);
    CHECK(res->status == k.status);
    const json error = json::parse(res->body, nullptr, false);
    REQUIRE(error.is_object());
    CHECK(error["error"]["param"] == k.field);
    CHECK(error["error"]["message"].get<std::string>().size() > 5);
  }
  // /v1/generate checks its own fields the same way.
  auto odd = post(c, "/v1/generate", {{"prompt", "x"}, {"width", 36}});
  REQUIRE(odd);
  CHECK(odd->status == 422);
  CHECK(json::parse(odd->body)["error"]["param"] == "width");
  auto no_route = c.Get("/v2/nothing");
  REQUIRE(no_route);
  CHECK(no_route->status == 404);
  CHECK(json::parse(no_route->body, nullptr, false).is_object());

  // Still serving.
  auto ok = post(c, "/v1/images/generations", {{"prompt", "x"}, {"size", "64x64"}, {"steps", 1}});
  REQUIRE(ok);
  CHECK(ok->status == 200);
  CHECK(server.stop(SIGTERM, std::chrono::seconds(30)) == 0);
}

TEST_CASE("sd serve: --api-key asks for the bearer token", "[serve][cli][parity]") {
  ServeProcess server({"--model", serve_test::tiny_model(), "--threads", "2", "--api-key", "s3cret"});
  REQUIRE(server.port() > 0);
  auto c = client(server);
  const json body = {{"prompt", "x"}, {"size", "64x64"}, {"steps", 1}};
  auto anonymous = post(c, "/v1/images/generations", body);
  REQUIRE(anonymous);
  CHECK(anonymous->status == 401);
  CHECK(json::parse(anonymous->body)["error"]["param"] == "Authorization");
  c.set_bearer_token_auth("wrong");
  auto wrong = post(c, "/v1/images/generations", body);
  REQUIRE(wrong);
  CHECK(wrong->status == 401);
  c.set_bearer_token_auth("s3cret");
  auto right = post(c, "/v1/images/generations", body);
  REQUIRE(right);
  CHECK(right->status == 200);
  httplib::Client open("127.0.0.1", server.port());
  open.set_read_timeout(10, 0);
  auto health = open.Get("/health");  // load balancers' health checks carry no key
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(server.stop(SIGTERM, std::chrono::seconds(30)) == 0);
}

TEST_CASE("sd serve: jobs, their event stream, cancelling, a full queue", "[serve][cli][parity]") {
  ServeProcess server({"--model", serve_test::tiny_model(), "--threads", "2", "--max-queue", "2", "--max-batch", "1"});
  REQUIRE(server.port() > 0);
  auto c = client(server);

  auto queued = post(c, "/v1/generate", {{"prompt", "a boat"}, {"width", 64}, {"height", 64}, {"steps", 4}, {"seed", 1}});
  REQUIRE(queued);
  REQUIRE(queued->status == 202);
  const std::string id = json::parse(queued->body)["id"];
  std::string stream;
  auto events = c.Get(("/v1/jobs/" + id + "/events").c_str(), [&](const char* data, size_t n) {
    stream.append(data, n);
    return stream.size() < (1u << 20);
  });
  REQUIRE(events);
  CHECK(events->status == 200);
  INFO(stream);
  CHECK(stream.find("event: progress") != std::string::npos);
  CHECK(stream.find("\"steps\":4") != std::string::npos);
  CHECK(stream.find("event: done") != std::string::npos);
  auto job = c.Get(("/v1/jobs/" + id).c_str());
  REQUIRE(job);
  const json j = json::parse(job->body);
  CHECK(j["status"] == "done");
  CHECK(png_of(j["images"][0]).width == 64);
  CHECK(c.Get("/v1/jobs/job-nope")->status == 404);

  // A long job, cancelled while it runs; two more fill the queue; the next one gets 503.
  auto slow = post(c, "/v1/generate", {{"prompt", "slow"}, {"width", 64}, {"height", 64}, {"steps", 150}});
  REQUIRE(slow);
  REQUIRE(slow->status == 202);
  const std::string slow_id = json::parse(slow->body)["id"];
  for (int i = 0; i < 400 && json::parse(c.Get(("/v1/jobs/" + slow_id).c_str())->body)["status"] != "running"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (int i = 0; i < 2; ++i) {
    auto filler = post(c, "/v1/generate", {{"prompt", "filler"}, {"width", 64}, {"height", 64}, {"steps", 1}});
    REQUIRE(filler);
    CHECK(filler->status == 202);
  }
  auto full = post(c, "/v1/generate", {{"prompt", "one too many"}, {"width", 64}, {"height", 64}, {"steps", 1}});
  REQUIRE(full);
  CHECK(full->status == 503);
  CHECK(full->has_header("Retry-After"));
  auto cancelled = c.Delete(("/v1/jobs/" + slow_id).c_str());
  REQUIRE(cancelled);
  CHECK(cancelled->status == 200);
  CHECK(json::parse(cancelled->body)["status"] == "cancelled");
  CHECK(json::parse(c.Get(("/v1/jobs/" + slow_id).c_str())->body)["step"].get<int>() < 150);
  CHECK(server.stop(SIGTERM, std::chrono::seconds(30)) == 0);
}

TEST_CASE("sd serve --preview-every: each job's latest preview, the last one its image", "[serve][cli][parity]") {
  ServeProcess server({"--model", serve_test::tiny_model(), "--threads", "2", "--preview-every", "1"});
  REQUIRE(server.port() > 0);
  auto c = client(server);
  auto queued = post(c, "/v1/generate", {{"prompt", "a boat"}, {"width", 64}, {"height", 64}, {"steps", 3}, {"seed", 1}});
  REQUIRE(queued);
  REQUIRE(queued->status == 202);
  const std::string id = json::parse(queued->body)["id"];
  json j;
  for (int i = 0; i < 600; ++i) {
    j = json::parse(c.Get(("/v1/jobs/" + id).c_str())->body);
    if (j["status"] != "queued" && j["status"] != "running") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  INFO(j.dump());
  REQUIRE(j["status"] == "done");
  // A preview after every step: the last decodes the final latents with the same VAE, the image.
  CHECK(j["preview_step"] == j["steps"]);
  REQUIRE(j["preview"] == "/v1/jobs/" + id + "/preview");
  auto preview = c.Get(j["preview"].get<std::string>().c_str());
  REQUIRE(preview);
  CHECK(preview->status == 200);
  CHECK(preview->get_header_value("Content-Type") == "image/png");
  std::string image;
  REQUIRE(sd_serve::base64_decode(j["images"][0], image));
  CHECK(preview->body == image);
  CHECK(c.Get("/v1/jobs/job-nope/preview")->status == 404);
  CHECK(server.stop(SIGTERM, std::chrono::seconds(30)) == 0);

  // Without --preview-every the route says previews are off.
  ServeProcess plain({"--model", serve_test::tiny_model(), "--threads", "2"});
  REQUIRE(plain.port() > 0);
  auto p = client(plain);
  auto done = post(p, "/v1/images/generations", {{"prompt", "a boat"}, {"size", "64x64"}, {"steps", 1}});
  REQUIRE(done);
  auto jobs = post(p, "/v1/generate", {{"prompt", "a boat"}, {"width", 64}, {"height", 64}, {"steps", 1}});
  REQUIRE(jobs);
  const std::string plain_id = json::parse(jobs->body)["id"];
  auto off = p.Get(("/v1/jobs/" + plain_id + "/preview").c_str());
  REQUIRE(off);
  CHECK(off->status == 404);
  CHECK(off->body.find("previews are off") != std::string::npos);
  CHECK(plain.stop(SIGTERM, std::chrono::seconds(30)) == 0);
}

TEST_CASE("sd serve: concurrent compatible requests run batched, each with its own image", "[serve][cli][parity]") {
  // The answers of requests alone (max batch 1) against the same requests sent at once (max batch 4).
  auto run_all = [](ServeProcess& server, bool concurrent) {
    std::vector<std::future<std::string>> answers;
    for (int i = 0; i < 4; ++i) {
      auto ask = [&server, i] {
        auto c = client(server);
        auto res = post(c, "/v1/images/generations",
                        {{"prompt", "item " + std::to_string(i)}, {"size", "64x64"}, {"steps", 3}, {"seed", 100 + i}});
        if (!res || res->status != 200) return std::string("failed");
        return json::parse(res->body)["data"][0]["b64_json"].get<std::string>();
      };
      answers.push_back(std::async(concurrent ? std::launch::async : std::launch::deferred, ask));
      if (!concurrent) answers.back().wait();
    }
    std::vector<std::string> out;
    for (auto& a : answers) out.push_back(a.get());
    return out;
  };
  std::vector<std::string> alone, together;
  {
    ServeProcess server({"--model", serve_test::tiny_model(), "--threads", "2", "--max-batch", "1"}, "alone");
    REQUIRE(server.port() > 0);
    alone = run_all(server, false);
    CHECK(server.stop(SIGTERM, std::chrono::seconds(30)) == 0);
  }
  ServeProcess server({"--model", serve_test::tiny_model(), "--threads", "2", "--max-batch", "4"}, "together");
  REQUIRE(server.port() > 0);
  together = run_all(server, true);
  auto c = client(server);
  const std::string metrics = c.Get("/metrics")->body;
  INFO(metrics);
  const double batches = metric(metrics, "sd_batches_total"), jobs = metric(metrics, "sd_batched_jobs_total");
  CHECK(jobs == 4);
  CHECK(batches < jobs);  // at least two requests shared a generation
  // The batch rounds differently from batch 1 (test_batch_parity.cpp: ~1e-6 in [0, 1]): an 8-bit
  // level may flip where a value sits on a rounding boundary, never more.
  for (size_t i = 0; i < 4; ++i) {
    INFO("request " << i);
    REQUIRE(together[i] != "failed");
    REQUIRE(alone[i] != "failed");
    const sd::Image a = png_of(alone[i]), b = png_of(together[i]);
    REQUIRE(a.rgb.size() == b.rgb.size());
    int max_level = 0;
    size_t differing = 0;
    for (size_t k = 0; k < a.rgb.size(); ++k) {
      const int d = std::abs(int(a.rgb[k]) - int(b.rgb[k]));
      max_level = std::max(max_level, d);
      differing += d != 0;
    }
    WARN("request " << i << ": batched vs alone: " << differing << " of " << a.rgb.size()
                    << " bytes differ, by at most " << max_level << " level(s)");
    CHECK(max_level <= 1);
    CHECK(differing * 100 <= a.rgb.size());  // under 1 %
  }
  CHECK(server.stop(SIGTERM, std::chrono::seconds(30)) == 0);
}

TEST_CASE("sd serve: SIGTERM finishes the running job, refuses new ones, exits 0", "[serve][cli][parity]") {
  ServeProcess server({"--model", serve_test::tiny_model(), "--threads", "2", "--shutdown-timeout", "20"});
  REQUIRE(server.port() > 0);
  auto pending = std::async(std::launch::async, [&server] {
    auto c = client(server);
    auto res = post(c, "/v1/images/generations", {{"prompt", "last one"}, {"size", "64x64"}, {"steps", 20}});
    return res ? res->status : -1;
  });
  {
    // SIGTERM while the job runs (up to 20 s for it to start on a loaded machine).
    auto watcher = client(server);
    for (int i = 0; i < 400; ++i) {
      auto m = watcher.Get("/metrics");
      if (m && metric(m->body, "sd_running") == 1) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ::kill(server.pid(), SIGTERM);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto c = client(server);
  auto late = post(c, "/v1/images/generations", {{"prompt", "too late"}, {"size", "64x64"}, {"steps", 1}});
  if (late) CHECK(late->status == 503);  // or refused outright, if the server has already stopped
  CHECK(pending.get() == 200);
  CHECK(server.stop(SIGTERM, std::chrono::seconds(30)) == 0);
}

TEST_CASE("sd serve: image-to-image through /v1/generate and a request the pipeline refuses fails alone", "[serve][cli][parity]") {
  ServeProcess server({"--model", serve_test::tiny_model(), "--threads", "2"});
  REQUIRE(server.port() > 0);
  auto c = client(server);
  sd::Image init;
  init.width = 64;
  init.height = 48;
  init.rgb.assign(static_cast<size_t>(init.width) * init.height * 3, 0);
  for (size_t k = 0; k < init.rgb.size(); ++k) init.rgb[k] = static_cast<uint8_t>(k * 7 % 256);
  const auto path = serve_test::temp_dir() / "init.png";
  sd::write_png(path, init);
  const std::string png = serve_test::slurp_binary(path);
  auto res = post(c, "/v1/generate?wait=1",
                  {{"prompt", "a painting"}, {"init_image", sd_serve::base64_encode(png)}, {"strength", 0.5},
                   {"steps", 4}, {"seed", 3}, {"scheduler", "ddim"}, {"n", 2}});
  REQUIRE(res);
  INFO(res->body.substr(0, 300));
  REQUIRE(res->status == 200);
  const json job = json::parse(res->body);
  CHECK(job["status"] == "done");
  CHECK(job["steps"] == 4);  // int(4 * 0.5) DDIM steps run from the image, for each of the 2 images
  REQUIRE(job["images"].size() == 2);
  CHECK(job["seeds"] == json::array({3, 4}));
  CHECK(job["images"][0] != job["images"][1]);  // image i from seed 3 + i
  const sd::Image out = png_of(job["images"][0]);
  CHECK(out.width == 64);  // the init image's own size
  CHECK(out.height == 48);
  auto bad = post(c, "/v1/generate", {{"prompt", "x"}, {"init_image", "bm90IGFuIGltYWdl"}});  // "not an image"
  REQUIRE(bad);
  CHECK(bad->status == 422);
  CHECK(json::parse(bad->body)["error"]["param"] == "init_image");
  // A request the pipeline itself refuses (an init image smaller than the VAE's factor) fails alone,
  // with the library's message; the server goes on.
  sd::Image dot;
  dot.width = dot.height = 1;
  dot.rgb = {10, 20, 30};
  sd::write_png(serve_test::temp_dir() / "dot.png", dot);
  auto failing = post(c, "/v1/generate?wait=1",
                      {{"prompt", "x"}, {"init_image", sd_serve::base64_encode(serve_test::slurp_binary(serve_test::temp_dir() / "dot.png"))},
                       {"steps", 2}});
  REQUIRE(failing);
  INFO(failing->body);
  CHECK(failing->status == 500);
  CHECK(json::parse(failing->body)["error"]["message"].get<std::string>().find("smaller than") != std::string::npos);
  auto after = post(c, "/v1/images/generations", {{"prompt", "still here"}, {"size", "64x64"}, {"steps", 1}});
  REQUIRE(after);
  CHECK(after->status == 200);
  auto strength_alone = post(c, "/v1/generate", {{"prompt", "x"}, {"strength", 0.5}});
  REQUIRE(strength_alone);
  CHECK(json::parse(strength_alone->body)["error"]["param"] == "strength");
  CHECK(server.stop(SIGTERM, std::chrono::seconds(30)) == 0);
}
