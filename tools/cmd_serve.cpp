// sd serve: the pipeline loaded once, an HTTP API in front of a bounded, batching job queue.
#include <httplib.h>
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "commands.h"
#include "sd/error.h"
#include "sd/log.h"
#include "sd/pipeline.h"
#include "serve/job.h"
#include "serve/metrics.h"
#include "serve/routes.h"
#include "serve/worker.h"

namespace sd_cli {
namespace {

struct ServeArgs {
  std::string model = "random:sd-v1-5", device = "cpu", precision = "fp32", host = "127.0.0.1", api_key;
  std::string vae_tiny, vae, config_dir, preview_vae_tiny;
  int preview_every = 0;
  int port = 8080, max_batch = 1, max_queue = 16, threads = 0, http_threads = 0;
  int max_side = 1024, max_images = 8, max_steps = 150, shutdown_timeout_s = 30, request_timeout_s = 600;
  int64_t max_body_kib = 8192;
  bool autocast = false, no_img2img = false;
};

// SIGTERM / SIGINT: blocked in every thread (set before any is started) and taken by sigwait in one.
sigset_t termination_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

}  // namespace

Run add_serve(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  app.add_option("--model", a->model, "diffusers folder, single-file .safetensors, or random:sd-v1-5")->capture_default_str();
  app.add_option("--device", a->device, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--precision", a->precision, "fp32, tf32, fp16 or bf16")->capture_default_str()
      ->check(CLI::IsMember({"fp32", "tf32", "fp16", "bf16"}));
  app.add_flag("--autocast", a->autocast, "fp32 weights with autocast (fp16 on CUDA, bf16 on CPU)");
  app.add_option("--threads", a->threads, "CPU threads of the pipeline (0: all cores)")->check(CLI::Range(0, 4096));
  app.add_option("--config-dir", a->config_dir, "configs + tokenizer for a single-file checkpoint");
  app.add_option("--vae-tiny", a->vae_tiny, "decode with the tiny autoencoder TAESD (folder, file or random:taesd)");
  app.add_option("--vae", a->vae, "a VAE replacing the model's: a diffusers VAE folder or a .safetensors VAE file");
  app.add_option("--preview-every", a->preview_every,
                 "a preview of each job's first image every N steps: GET /v1/jobs/{id}/preview (0: none)")
      ->capture_default_str()
      ->check(CLI::Range(0, 10000));
  app.add_option("--preview-vae-tiny", a->preview_vae_tiny,
                 "decode the previews with this tiny autoencoder (folder, file or random:taesd; default: the "
                 "images' decoder)");
  app.add_flag("--no-img2img", a->no_img2img, "do not load the VAE encoder (saves memory; init_image is refused)");
  app.add_option("--host", a->host, "address to listen on (0.0.0.0: every interface)")->capture_default_str();
  app.add_option("--port", a->port, "TCP port (0: any free one, printed on stdout)")->capture_default_str()
      ->check(CLI::Range(0, 65535));
  app.add_option("--max-batch", a->max_batch, "images run as one batched generation at most (1: each request alone, exactly sd generate's images; "
                 "more: compatible requests batched, which can change a few pixel values by one level: docs/serving.md)")->capture_default_str()
      ->check(CLI::Range(1, 256));
  app.add_option("--max-queue", a->max_queue, "jobs waiting at most; beyond, 503 with Retry-After")->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--api-key", a->api_key, "require Authorization: Bearer KEY (except on / and /health)");
  app.add_option("--max-size", a->max_side, "largest width or height a request may ask for")->capture_default_str()
      ->check(CLI::Range(8, 8192));
  app.add_option("--max-images", a->max_images, "largest n per request")->capture_default_str()->check(CLI::Range(1, 256));
  app.add_option("--max-steps", a->max_steps, "most steps per request")->capture_default_str()->check(CLI::Range(1, 10000));
  app.add_option("--max-body-kib", a->max_body_kib, "largest request body")->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--shutdown-timeout", a->shutdown_timeout_s,
                 "SIGTERM: seconds to let queued and running jobs finish before cancelling them")
      ->capture_default_str()->check(CLI::Range(0, 3600));
  app.add_option("--request-timeout", a->request_timeout_s, "seconds a synchronous request waits for its images")
      ->capture_default_str()->check(CLI::Range(1, 86400));
  app.add_option("--http-threads", a->http_threads, "HTTP worker threads (0: max-queue + 8)")->check(CLI::Range(0, 4096));

  return [a] {
    const sigset_t signals = termination_signals();
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    sd::LoadOptions load;
    load.device = a->device;
    load.precision = sd::precision_from_name(a->precision);
    load.autocast = a->autocast;
    load.threads = a->threads;
    load.config_dir = a->config_dir;
    load.vae_tiny = a->vae_tiny;
    load.preview_vae_tiny = a->preview_vae_tiny;
    load.vae = a->vae;
    load.vae_encoder = !a->no_img2img;
    auto pipe = sd::Pipeline::load(a->model, load);

    sd_serve::JobQueue queue(static_cast<size_t>(a->max_queue), a->max_batch);
    sd_serve::Metrics metrics;
    sd_serve::ServeContext context(queue, metrics);
    context.limits.max_side = a->max_side;
    context.limits.max_images = a->max_images;
    context.limits.max_steps = a->max_steps;
    context.limits.max_body_bytes = static_cast<size_t>(a->max_body_kib) * 1024;
    context.api_key = a->api_key;
    context.model = a->model;
    context.default_width = static_cast<int>(pipe.info().default_width);
    context.default_height = static_cast<int>(pipe.info().default_height);
    context.request_timeout = std::chrono::seconds(a->request_timeout_s);
    context.preview_every = a->preview_every;

    httplib::Server server;
    const int http_threads = a->http_threads > 0 ? a->http_threads : a->max_queue + 8;
    server.new_task_queue = [http_threads] { return new httplib::ThreadPool(static_cast<size_t>(http_threads)); };
    server.set_payload_max_length(context.limits.max_body_bytes);
    server.set_read_timeout(30, 0);
    server.set_write_timeout(30, 0);
    sd_serve::install_routes(server, context);

    int port = a->port;
    if (port == 0) {
      port = server.bind_to_any_port(a->host);
    } else if (!server.bind_to_port(a->host, port)) {
      port = -1;
    }
    SD_CHECK(port > 0, "cannot listen on ", a->host, ":", a->port, " (address in use, or not an address of this machine)");

    sd_serve::Worker worker(pipe, queue, metrics, a->preview_every);
    worker.start();
    context.running = [&worker] { return worker.busy(); };
    std::atomic<bool> stopping{false};

    // Shutdown: refuse new work, let the queue drain for the timeout, then cancel what is left (at
    // its next step), then stop the HTTP server once every waiting request has had its answer.
    std::thread signal_thread([&] {
      int signal_number = 0;
      sigwait(&signals, &signal_number);
      if (stopping) return;
      std::fprintf(stderr, "sd serve: signal %d: draining (up to %d s)\n", signal_number, a->shutdown_timeout_s);
      context.draining = true;
      queue.close(false);
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(a->shutdown_timeout_s);
      while ((queue.size() > 0 || worker.busy()) && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      if (queue.size() > 0 || worker.busy()) {
        std::fprintf(stderr, "sd serve: cancelling the jobs left\n");
        queue.close(true);
        worker.cancel_running();
      }
      worker.join();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));  // waiting requests send their answers
      server.stop();
    });

    std::printf("sd serve: listening on http://%s:%d\n", a->host.c_str(), port);
    std::fflush(stdout);
    const bool listened = server.listen_after_bind();
    stopping = true;
    if (signal_thread.joinable()) {
      // listen ended without a signal (it failed): wake the signal thread so that it returns.
      if (!context.draining) pthread_kill(signal_thread.native_handle(), SIGTERM);
      signal_thread.join();
    }
    queue.close(true);
    worker.cancel_running();
    worker.join();
    std::fprintf(stderr, "sd serve: stopped\n");
    return listened || context.draining ? 0 : 1;
  };
}

}  // namespace sd_cli
