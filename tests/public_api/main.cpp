// A program that links libsd.so the way a user's program does (sd::sd, the public headers only):
// what has to cross the library boundary still does with hidden symbol visibility. An sd::Error
// thrown inside the library is caught by type, a scheduler defined here derives from sd::Scheduler
// (its vtable and typeinfo come from libsd.so), and the public inspect and FLOP entry points run.
// Exit 0 when every check passes; the checks are printed.
#include <sd/sd.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <typeinfo>

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "ok" : "FAILED", what.c_str());
  if (!ok) ++failures;
}

template <class F>
bool throws_sd_error(F&& f) {
  try {
    f();
  } catch (const sd::Error& e) {
    return typeid(e) == typeid(sd::Error);
  } catch (...) {
    return false;
  }
  return false;
}

// A scheduler of the program's own: the base class's vtable, typeinfo and its one defined virtual
// (scale_model_input) are the library's.
class ConstantScheduler : public sd::Scheduler {
 public:
  void set_timesteps(int n) override { steps_ = torch::arange(n, torch::kLong); }
  at::Tensor timesteps() const override { return steps_; }
  double init_noise_sigma() const override { return 1.0; }
  at::Tensor step(const at::Tensor&, int64_t, const at::Tensor& sample, const sd::StepNoise&) override {
    return sample;
  }
  void set_begin_index(int64_t) override {}
  at::Tensor add_noise(const at::Tensor& original, const at::Tensor&, int64_t) const override {
    return original;
  }
  sd::SchedulerKind kind() const override { return sd::SchedulerKind::kDDIM; }

 private:
  at::Tensor steps_;
};

}  // namespace

int main(int argc, char** argv) try {
  // 1. Exceptions from inside libsd.so, caught by their type.
  check(throws_sd_error([] { sd::precision_from_name("fp8"); }), "sd::Error from precision_from_name");
  check(throws_sd_error([] { sd::SafetensorsFile file("/nonexistent/weights.safetensors"); }),
        "sd::Error from the SafetensorsFile constructor");
  check(throws_sd_error([] { sd::inspect_model("/nonexistent/model"); }), "sd::Error from inspect_model");
  try {
    sd::scheduler_kind_from_name("no-such-scheduler");
    check(false, "sd::Error caught as std::runtime_error");
  } catch (const std::runtime_error& e) {
    check(dynamic_cast<const sd::Error*>(&e) != nullptr, "sd::Error caught as std::runtime_error");
  }

  // 2. sd::Scheduler: the library's and the program's own, through the same base.
  std::unique_ptr<sd::Scheduler> library =
      sd::make_scheduler(sd::SchedulerKind::kDDIM, sd::SchedulerConfig{});
  library->set_timesteps(10);
  check(library->timesteps().size(0) == 10, "a library scheduler through sd::Scheduler");
  ConstantScheduler own;
  sd::Scheduler& base = own;
  own.set_timesteps(3);
  const at::Tensor x = torch::ones({1, 4, 2, 2});
  check(base.scale_model_input(x, 0).equal(x) && dynamic_cast<ConstantScheduler*>(&base) == &own,
        "a program's scheduler derived from sd::Scheduler");

  // 3. The FLOP count and inspect, public entry points.
  const sd::ModelFlops flops = sd::model_flops("random:sd-v1-5", 1, /*guidance=*/false, 512, 512);
  check(std::abs(flops.unet.total() / 1e9 - 803.3) < 0.05,
        "SD 1.5 UNet at 64x64 latents: " + std::to_string(flops.unet.total() / 1e9) + " GFLOP");
  // argv[1]: the golden data's folder (LIBSD_GOLDEN_DIR in the environment overrides it).
  const char* golden_env = std::getenv("LIBSD_GOLDEN_DIR");
  const std::string golden = golden_env != nullptr && *golden_env != '\0' ? golden_env
                             : argc > 1                                   ? argv[1]
                                                                          : "";
  if (!golden.empty()) {
    const std::string tiny = (std::filesystem::path(golden) / "pipelines/sd1_tiny").string();
    sd::InspectOptions options;
    options.compare_keys = true;
    const sd::InspectReport report = sd::inspect_model(tiny, options);
    check(report.format == "diffusers" && report.components.size() == 3 && report.differences() == 0,
          "inspect_model of " + tiny + ": " + std::to_string(report.differences()) + " differences");
  }
  return failures == 0 ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
