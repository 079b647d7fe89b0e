// The CUDA-graph bookkeeping of the UNet (pipeline/unet_graph_cache.h) on the CPU: the capture
// step is injected, a fake that "replays" by running the forward function into the static output,
// so what is tested is which key captures when, what is reused, what falls back and what is logged.
#include <torch/torch.h>

#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "pipeline/unet_graph_cache.h"
#include "sd/error.h"
#include "sd/log.h"

namespace {

// Collects the library's log lines while alive; then back to stderr.
class LogCapture {
 public:
  LogCapture() {
    sd::set_log_sink([this](sd::LogLevel level, std::string_view message) {
      if (level == sd::LogLevel::kInfo) lines.emplace_back(message);
    });
  }
  ~LogCapture() {
    sd::set_log_sink([](sd::LogLevel, std::string_view message) {
      std::fprintf(stderr, "libsd: %.*s\n", static_cast<int>(message.size()), message.data());
    });
  }
  std::vector<std::string> lines;
};

// A stand-in UNet: the output depends on every input, so a stale static buffer would show.
at::Tensor fake_unet(const std::vector<at::Tensor>& in) { return in[0] * 2 + in[1] + in[2].sum(); }

std::vector<at::Tensor> inputs_of(int64_t batch, int64_t size, c10::ScalarType dtype, float value) {
  return {torch::full({batch, 4, size, size}, value, torch::TensorOptions().dtype(dtype)),
          torch::scalar_tensor(10.0f * value, torch::TensorOptions().dtype(dtype)),
          torch::full({batch, 77, 8}, value, torch::TensorOptions().dtype(dtype))};
}

sd::UNetGraphKey key_of(const std::vector<at::Tensor>& in) {
  sd::UNetGraphKey key;
  key.batch = in[0].size(0);
  key.channels = in[0].size(1);
  key.height = in[0].size(2);
  key.width = in[0].size(3);
  key.context_tokens = in[2].size(1);
  key.context_dim = in[2].size(2);
  key.dtype = in[0].scalar_type();
  return key;
}

struct Counts {
  int captures = 0, replays = 0;
};

// Captures like the CUDA step does (static copies of the inputs, a static output), replays by
// recomputing into the static output.
sd::UNetCapture fake_capture(Counts& counts) {
  return [&counts](const sd::UNetForward& forward, const std::vector<at::Tensor>& inputs) {
    ++counts.captures;
    auto captured = std::make_unique<sd::CapturedUNet>();
    for (const auto& x : inputs) captured->inputs.push_back(x.clone());
    captured->output = forward(captured->inputs);
    sd::CapturedUNet* self = captured.get();
    captured->replay = [self, forward, &counts] {
      ++counts.replays;
      self->output.copy_(forward(self->inputs));
    };
    return captured;
  };
}

}  // namespace

TEST_CASE("UNet graph keys differ per batch, size, dtype, autocast and conditioning channels", "[unit][cuda_graphs]") {
  const auto base = key_of(inputs_of(2, 8, torch::kFloat, 1));
  CHECK(base == key_of(inputs_of(2, 8, torch::kFloat, 5)));  // values do not matter
  CHECK_FALSE(base == key_of(inputs_of(4, 8, torch::kFloat, 1)));
  CHECK_FALSE(base == key_of(inputs_of(2, 16, torch::kFloat, 1)));
  CHECK_FALSE(base == key_of(inputs_of(2, 8, torch::kBFloat16, 1)));
  auto autocast = base;
  autocast.autocast = true;
  CHECK_FALSE(base == autocast);
  auto inpainting = base;
  inpainting.channels = 9;
  CHECK_FALSE(base == inpainting);
  CHECK((base < autocast) != (autocast < base));
  CHECK(sd::describe(base) == "batch 2, 4x8x8 latents, Float");
}

TEST_CASE("A UNet graph is captured once per key and replayed with the new inputs, its output a copy",
          "[unit][cuda_graphs]") {
  Counts counts;
  sd::UNetGraphCache cache(fake_capture(counts));
  const auto first_in = inputs_of(1, 8, torch::kFloat, 1);
  const sd::UNetRun first = cache.run(key_of(first_in), first_in, fake_unet);
  CHECK(first.replayed);
  CHECK(torch::equal(first.output, fake_unet(first_in)));
  const auto second_in = inputs_of(1, 8, torch::kFloat, 3);
  const sd::UNetRun second = cache.run(key_of(second_in), second_in, fake_unet);
  CHECK(second.replayed);
  CHECK(torch::equal(second.output, fake_unet(second_in)));
  CHECK(torch::equal(first.output, fake_unet(first_in)));  // not overwritten by the second replay
  CHECK(counts.captures == 1);
  CHECK(counts.replays == 2);
  const auto other_in = inputs_of(2, 8, torch::kFloat, 1);
  CHECK(cache.run(key_of(other_in), other_in, fake_unet).replayed);
  CHECK(counts.captures == 2);
  CHECK(cache.size() == 2);
}

TEST_CASE("A failed UNet graph capture falls back to eager, is not retried, and is logged once",
          "[unit][cuda_graphs]") {
  LogCapture log;
  int attempts = 0;
  sd::UNetGraphCache cache([&](const sd::UNetForward&, const std::vector<at::Tensor>&)
                               -> std::unique_ptr<sd::CapturedUNet> {
    ++attempts;
    SD_FAIL("operation not permitted when stream is capturing\nbacktrace line");
  });
  const auto in = inputs_of(1, 8, torch::kFloat, 2);
  for (int i = 0; i < 3; ++i) {
    const sd::UNetRun run = cache.run(key_of(in), in, fake_unet);
    CHECK_FALSE(run.replayed);
    CHECK(torch::equal(run.output, fake_unet(in)));
  }
  CHECK(attempts == 1);
  CHECK(cache.failed(key_of(in)));
  CHECK(cache.size() == 0);
  REQUIRE(log.lines.size() == 1);
  CHECK(log.lines[0] ==
        "CUDA graph capture failed for batch 1, 4x8x8 latents, Float (operation not permitted when stream is "
        "capturing): the UNet runs eagerly for this shape");
  // A capture that returns nothing usable fails the same way.
  sd::UNetGraphCache empty([](const sd::UNetForward&, const std::vector<at::Tensor>&) {
    return std::unique_ptr<sd::CapturedUNet>();
  });
  CHECK_FALSE(empty.run(key_of(in), in, fake_unet).replayed);
  CHECK(empty.failed(key_of(in)));
  CHECK(log.lines.size() == 2);
}

TEST_CASE("The UNet graph cache clears, and keeps at most its cap, dropping the least recently used",
          "[unit][cuda_graphs]") {
  Counts counts;
  sd::UNetGraphCache cache(fake_capture(counts), 2);
  const auto a = inputs_of(1, 8, torch::kFloat, 1), b = inputs_of(2, 8, torch::kFloat, 1),
             c = inputs_of(3, 8, torch::kFloat, 1);
  cache.run(key_of(a), a, fake_unet);
  cache.run(key_of(b), b, fake_unet);
  cache.run(key_of(a), a, fake_unet);  // a is now the most recently used: c's capture drops b
  cache.run(key_of(c), c, fake_unet);
  CHECK(cache.size() == 2);
  CHECK(counts.captures == 3);
  cache.run(key_of(a), a, fake_unet);
  CHECK(counts.captures == 3);
  cache.run(key_of(b), b, fake_unet);
  CHECK(counts.captures == 4);
  cache.clear();
  CHECK(cache.size() == 0);
  const sd::UNetRun again = cache.run(key_of(a), a, fake_unet);
  CHECK(again.replayed);
  CHECK(counts.captures == 5);
  CHECK(torch::equal(again.output, fake_unet(a)));
}
