// Bad numbers and sizes (issue 18): in the tools, a usage error with exit code 2 and one line; in the
// library, an sd::Error; sizes that cannot fit refused in one line before anything is allocated; and
// an out-of-memory that still happens is one sd::Error after which the pipeline works as before.
#include <torch/torch.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "address_space_limit.h"
#include "cli_run.h"
#include "golden.h"
#include "sd/error.h"
#include "sd/pipeline.h"
#include "sd/safetensors.h"
#include "skip.h"

namespace {
namespace fs = std::filesystem;

std::string tiny() { return (golden::dir() / "pipelines/sd1_tiny").string(); }

size_t lines(const std::string& text) { return static_cast<size_t>(std::count(text.begin(), text.end(), '\n')); }

cli::Run run_bench(const std::string& tool, const std::string& args) {
  const auto out = cli::temp_dir() / "bench-stdout.txt", err = cli::temp_dir() / "bench-stderr.txt";
  const std::string command = "'" LIBSD_BINARY_DIR "/bench/" + tool + "' " + args + " > '" + out.string() + "' 2> '" +
                              err.string() + "' < /dev/null";
  const int status = std::system(command.c_str());
  cli::Run r{WIFEXITED(status) ? WEXITSTATUS(status) : -1, cli::slurp(out), cli::slurp(err)};
  UNSCOPED_INFO("$ " << tool << " " << args << "\n-> " << r.code << "\nstderr: " << r.err);
  return r;
}

sd::Pipeline& tiny_pipeline() {
  static sd::Pipeline pipe = sd::Pipeline::load(tiny());
  return pipe;
}

sd::GenerateOptions small_request() {
  sd::GenerateOptions opt;
  opt.width = opt.height = 64;
  opt.steps = 2;
  opt.seed = 7;
  return opt;
}

std::string generate_error(sd::Pipeline& pipe, const sd::GenerateOptions& opt) {
  try {
    pipe.generate("a fox", opt);
    return "no error";
  } catch (const sd::Error& e) {
    return e.what();
  }
}

}  // namespace

TEST_CASE("sd generate: bad numbers are usage errors (exit 2) in one line, nothing written", "[unit][cli][arguments]") {
  const std::string png = (cli::temp_dir() / "bad-args.png").string();
  const std::vector<std::string> bad{
      "--guidance nan", "--guidance inf", "--guidance -1", "--guidance -inf", "--eta -1", "--eta 1.5", "--eta nan",
      "--threads -3", "--seed -1", "--seed 18446744073709551616", "--seed 1e5", "--seed 0x10", "--seed ''",
      "--steps 0", "--steps -5", "--batch 0", "--batch -1", "--clip-skip -1", "--prepack-max-pixels -2",
      "--height 100", "--width 0", "--height 99999999999", "--attention-slice -1", "--memory-limit-mib -2",
      "--init-image x.png --strength 1.5", "--init-image x.png --strength nan",
      // Known only once the model is loaded: the tiny model's schedule has 1000 training steps.
      "--steps 1001"};
  for (const auto& args : bad) {
    INFO(args);
    auto r = cli::run_sd("generate --model '" + tiny() + "' --prompt x -q " + args + " -o '" + png + "'");
    CHECK(r.code == 2);
    CHECK(lines(r.err) <= 2);  // CLI11 adds "Run with --help for more information."
    CHECK_THAT(r.err, !Catch::Contains("Exception raised from"));
    CHECK_FALSE(fs::exists(png));
  }
  // The largest seed is a seed; leading zeros are decimal, not octal.
  for (const char* seed : {"18446744073709551615", "010"}) {
    auto r = cli::run_sd("generate --model '" + tiny() + "' --prompt x -q --steps 1 --height 64 --width 64 --seed " +
                         std::string(seed) + " -o '" + png + "'");
    CHECK(r.code == 0);
    auto sidecar = nlohmann::json::parse(cli::slurp(cli::temp_dir() / "bad-args.json"));
    CHECK(sidecar["seed"].get<uint64_t>() == (std::string(seed) == "010" ? 10u : 18446744073709551615ull));
  }
}

TEST_CASE("sd generate --height 100000 --width 100000 is refused in one line before allocating", "[unit][cli][arguments]") {
  const std::string png = (cli::temp_dir() / "huge.png").string();
  auto r = cli::run_sd("generate --model '" + tiny() + "' --prompt x -q --steps 1 --height 100000 --width 100000 -o '" +
                       png + "'");
  CHECK(r.code == 1);
  CHECK(lines(r.err) == 1);
  CHECK_THAT(r.err, Catch::Contains("out of memory (estimated before running)") && Catch::Contains("needs about") &&
                        Catch::Contains("lower it with"));
  CHECK_FALSE(fs::exists(png));
  // A given limit: a 64x64 generation does not fit in 1 MiB.
  auto limited = cli::run_sd("generate --model '" + tiny() + "' --prompt x -q --steps 1 --height 64 --width 64 "
                             "--memory-limit-mib 1 -o '" + png + "'");
  CHECK(limited.code == 1);
  CHECK_THAT(limited.err, Catch::Contains("the memory limit of 1 MiB"));
  CHECK_FALSE(fs::exists(png));
}

TEST_CASE("runtime errors are one line; --verbose shows the full text", "[unit][cli][arguments]") {
  // A UNet weights file missing one tensor: the binder's error lists the missing keys below its
  // first line. The tiny pipeline's other files are links to the originals.
  const fs::path model = cli::temp_dir() / "missing-tensor";
  fs::remove_all(model);
  for (const auto& entry : fs::recursive_directory_iterator(tiny())) {
    const fs::path target = model / fs::relative(entry.path(), tiny());
    if (entry.is_directory()) {
      fs::create_directories(target);
    } else if (entry.path().filename() != "diffusion_pytorch_model.safetensors" ||
               entry.path().parent_path().filename() != "unet") {
      fs::create_directories(target.parent_path());
      fs::create_symlink(entry.path(), target);
    }
  }
  sd::StateDict unet = sd::load_safetensors(fs::path(tiny()) / "unet/diffusion_pytorch_model.safetensors");
  unet.erase("conv_norm_out.weight");
  sd::save_safetensors(model / "unet/diffusion_pytorch_model.safetensors", unet);
  const std::string args = "generate --model '" + model.string() + "' --prompt x -q --steps 1 -o '" +
                           (cli::temp_dir() / "missing.png").string() + "'";
  auto r = cli::run_sd(args);
  CHECK(r.code == 1);
  CHECK(lines(r.err) == 1);
  CHECK_THAT(r.err, Catch::StartsWith("error: ") && Catch::Contains("weights do not match the model") &&
                        Catch::Contains("more with --verbose"));
  CHECK_THAT(r.err, !Catch::Contains("conv_norm_out.weight"));
  for (const std::string& verbose : {"--verbose " + args, args + " --verbose"}) {
    auto v = cli::run_sd(verbose);
    CHECK(v.code == 1);
    CHECK_THAT(v.err, Catch::Contains("conv_norm_out.weight"));
  }
}

TEST_CASE("benchmark tools: bad arguments exit 2 in one line", "[unit][cli][arguments]") {
  const std::string common = "--model '" + tiny() + "' --quiet --height 64 --width 64 ";
  const std::vector<std::pair<std::string, std::string>> bad{
      {"bench_latency", "--seed -1"},          {"bench_latency", "--threads -1"},
      {"bench_latency", "--guidance nan"},     {"bench_latency", "--guidance -2"},
      {"bench_latency", "--batch 0"},          {"bench_latency", "--batch 1,-2"},
      {"bench_latency", "--steps abc"},        {"bench_latency", "--precision fp64"},
      {"bench_latency", "--repeats 0"},        {"bench_latency", "--warmup -1"},
      {"bench_latency", "--peak-tflops nan"},  {"bench_latency", "--height 100"},
      {"bench_latency", "--attention-slice -4"}, {"bench_throughput", "--max-batch 0"},
      {"bench_throughput", "--batch 0"},       {"bench_throughput", "--seed 99999999999999999999"},
      {"bench_quality", "--amplify -1"},       {"bench_quality", "--steps 0"},
  };
  for (const auto& [tool, args] : bad) {
    INFO(tool << " " << args);
    auto r = run_bench(tool, common + args);
    CHECK(r.code == 2);
    CHECK(lines(r.err) <= 2);
    CHECK_THAT(r.err, !Catch::Contains("Exception raised from"));
  }
}

TEST_CASE("the library refuses bad numbers with sd::Error", "[unit][arguments]") {
  auto& pipe = tiny_pipeline();
  auto with = [](const std::function<void(sd::GenerateOptions&)>& edit) {
    auto opt = small_request();
    edit(opt);
    return opt;
  };
  const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
  CHECK_THAT(generate_error(pipe, with([&](auto& o) { o.guidance_scale = nan; })), Catch::Contains("guidance"));
  CHECK_THAT(generate_error(pipe, with([&](auto& o) { o.guidance_scale = inf; })), Catch::Contains("guidance"));
  CHECK_THAT(generate_error(pipe, with([&](auto& o) { o.guidance_scale = -1; })), Catch::Contains("guidance"));
  CHECK_THAT(generate_error(pipe, with([&](auto& o) { o.eta = -0.5; })), Catch::Contains("eta"));
  CHECK_THAT(generate_error(pipe, with([&](auto& o) { o.eta = 1.5; })), Catch::Contains("eta"));
  CHECK_THAT(generate_error(pipe, with([&](auto& o) { o.eta = nan; })), Catch::Contains("eta"));
  CHECK_THAT(generate_error(pipe, with([&](auto& o) { o.steps = 0; })), Catch::Contains("steps"));
  CHECK_THAT(generate_error(pipe, with([&](auto& o) { o.steps = 1001; })), Catch::Contains("1000 training steps"));
  CHECK_THAT(generate_error(pipe, with([&](auto& o) { o.batch = 0; })), Catch::Contains("batch"));
  CHECK_THAT(generate_error(pipe, with([&](auto& o) { o.batch = -3; })), Catch::Contains("batch"));
  CHECK_THAT(generate_error(pipe, with([&](auto& o) { o.clip_skip = -1; })), Catch::Contains("clip_skip"));
  CHECK_THAT(generate_error(pipe, with([&](auto& o) { o.width = -64; })), Catch::Contains("width"));
  CHECK_THAT(generate_error(pipe, with([&](auto& o) { o.strength = 0.5; })), Catch::Contains("strength"));
  sd::LoadOptions load;
  load.threads = -3;
  CHECK_THROWS_WITH(sd::Pipeline::load(tiny(), load), Catch::Contains("threads"));
  load = {};
  load.memory_limit = -2;
  CHECK_THROWS_WITH(sd::Pipeline::load(tiny(), load), Catch::Contains("memory_limit"));
  load = {};
  load.prepack_max_pixels = -7;
  CHECK_THROWS_WITH(sd::Pipeline::load(tiny(), load), Catch::Contains("prepack_max_pixels"));
  load = {};
  load.attention_slice = -1;
  CHECK_THROWS_WITH(sd::Pipeline::load(tiny(), load), Catch::Contains("attention_slice"));
  // Strength outside [0, 1] with an init image (the library's own check, verified).
  sd::LoadOptions with_encoder;
  with_encoder.vae_encoder = true;
  auto img2img = sd::Pipeline::load(tiny(), with_encoder);
  sd::Image image;
  image.width = image.height = 64;
  image.rgb.assign(64 * 64 * 3, 128);
  for (double strength : {-0.1, 1.5, nan}) {
    auto opt = small_request();
    opt.init_image = image;
    opt.strength = strength;
    CHECK_THAT(generate_error(img2img, opt), Catch::Contains("strength must be in [0, 1]"));
  }
}

TEST_CASE("an oversized generation is refused by its estimate, and the pipeline still works", "[unit][arguments][memory]") {
  auto& pipe = tiny_pipeline();
  const auto reference = pipe.generate("a fox", small_request()).latents.clone();
  auto huge = small_request();
  huge.width = huge.height = 100000;
  const std::string error = generate_error(pipe, huge);
  CHECK_THAT(error, Catch::Contains("100000x100000") && Catch::Contains("needs about") &&
                        Catch::Contains("the memory available"));
  CHECK(error.find('\n') == std::string::npos);
  huge.batch = 64;
  huge.width = huge.height = 4096;
  CHECK_THAT(generate_error(pipe, huge), Catch::Contains("a smaller batch"));
  CHECK(torch::equal(pipe.generate("a fox", small_request()).latents, reference));
  // A limit of its own.
  sd::LoadOptions limited;
  limited.memory_limit = 1 << 20;
  auto small = sd::Pipeline::load(tiny(), limited);
  CHECK_THAT(generate_error(small, small_request()), Catch::Contains("the memory limit of 1 MiB (memory_limit)"));
}

TEST_CASE("an out-of-memory during a generation is one sd::OutOfMemoryError and the pipeline's next result is unchanged",
          "[unit][arguments][memory]") {
  SD_SKIP_IF_FAILED_ALLOCATIONS_ABORT();
  // A request beyond the address space left (64 MiB) runs with the up-front check off (memory_limit = -1).
  sd::LoadOptions unchecked;
  unchecked.memory_limit = -1;
  auto pipe = sd::Pipeline::load(tiny(), unchecked);
  const auto reference = pipe.generate("a fox", small_request()).latents.clone();
  auto big = small_request();
  big.width = big.height = 2048;
  big.batch = 4;
  std::string error = "no error";
  int64_t requested = -2;
  {
    sd_test::AddressSpaceLimit limit(64 << 20);
    try {
      pipe.generate("a fox", big);
    } catch (const sd::OutOfMemoryError& e) {
      error = e.what();
      requested = e.requested_bytes();
    } catch (const std::exception& e) {
      error = std::string("not an sd::OutOfMemoryError: ") + e.what();
    }
  }
  CHECK_THAT(error, Catch::StartsWith("out of memory on cpu generating 2048x2048, batch 4: asked "));
  CHECK(error.find('\n') == std::string::npos);
  CHECK(requested > 0);  // the CPU allocator says how much it was asked for
  CHECK(torch::equal(pipe.generate("a fox", small_request()).latents, reference));
}
