// The `sd` binary, driven as a person would: generate (checked against diffusers), tokenize, inspect,
// and its exit codes.
#include <torch/torch.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "cli_run.h"
#include "golden.h"
#include "sd/safetensors.h"

namespace {
namespace fs = std::filesystem;

using cli::Run;
using cli::run_sd;
using cli::slurp;
using cli::temp_dir;

std::string tiny() { return (golden::dir() / "pipelines/sd1_tiny").string(); }

}  // namespace

TEST_CASE("sd generate reproduces diffusers' latents at every step and writes PNG + sidecar", "[parity][cli]") {
  const std::string name = "e2e/sd1_tiny/pndm_cfg7.5_negempty";
  auto ref = golden::load_case(name);
  const auto tol = golden::tolerance_of(golden::find_case(name));
  const auto init = temp_dir() / "init.safetensors";
  sd::save_safetensors(init, sd::NamedTensors{{"latents", ref.at("initial_latents")}});
  const auto png = temp_dir() / "out.png", latents = temp_dir() / "latents.safetensors";
  auto r = run_sd("generate --model '" + tiny() + "' --prompt 'a photo of an astronaut riding a horse on mars' "
              "--negative-prompt '' --guidance 7.5 --steps 10 --scheduler pndm --height 64 --width 64 --init-latents '" +
              init.string() + "' --save-latents '" + latents.string() + "' --no-channels-last -o '" + png.string() + "'");
  REQUIRE(r.code == 0);
  CHECK(fs::file_size(png) > 100);
  auto sidecar = nlohmann::json::parse(slurp(temp_dir() / "out.json"));
  CHECK(sidecar["steps"] == 10);
  CHECK(sidecar["scheduler"] == "pndm");
  CHECK(sidecar["timings_s"]["unet_evals"].size() == 11);
  sd::SafetensorsFile saved(latents);
  const auto& per_step = ref.at("latents_per_step");
  REQUIRE(saved.contains("step_10"));
  CHECK_FALSE(saved.contains("step_11"));
  for (int64_t i = 0; i < per_step.size(0); ++i) {
    INFO("step " << i);
    CHECK_CLOSE_TO_GOLDEN(saved.get("step_" + std::to_string(i)), per_step[i], tol);
  }
  CHECK_CLOSE_TO_GOLDEN(saved.get("final"), per_step[per_step.size(0) - 1], tol);
}

TEST_CASE("sd generate with batch > 1 writes numbered images", "[unit][cli]") {
  const auto png = temp_dir() / "batch.png";
  auto r = run_sd("generate --model '" + tiny() + "' --prompt 'a fox' --steps 2 --height 64 --width 64 --batch 2 "
              "--seed 3 -q -o '" + png.string() + "'");
  REQUIRE(r.code == 0);
  CHECK(fs::exists(temp_dir() / "batch-0.png"));
  CHECK(fs::exists(temp_dir() / "batch-1.png"));
  CHECK_FALSE(fs::exists(png));
}

TEST_CASE("sd generate --preview rewrites a preview PNG during the run, the last one the image itself", "[unit][cli]") {
  const auto png = temp_dir() / "watched.png", preview = temp_dir() / "watched.preview.png";
  fs::remove(preview);
  // Every step previewed with the model's VAE: the last preview decodes the final latents, the image.
  auto r = run_sd("generate --model '" + tiny() + "' --prompt 'a fox' --steps 3 --height 64 --width 64 -q "
                  "--preview '" + preview.string() + "' --preview-every 1 -o '" + png.string() + "'");
  REQUIRE(r.code == 0);
  REQUIRE(fs::exists(preview));
  CHECK(slurp(preview) == slurp(png));
  const auto sidecar = nlohmann::json::parse(slurp(temp_dir() / "watched.json"));
  CHECK(sidecar["preview"]["every"] == 1);
  CHECK(sidecar["preview"]["decoder"] == "AutoencoderKL");
  CHECK(sidecar["timings_s"]["preview"].get<double>() > 0);
  // --preview-every and --preview-vae-tiny mean nothing without --preview: usage errors.
  CHECK(run_sd("generate --model '" + tiny() + "' --prompt x --preview-every 2").code == 2);
  CHECK(run_sd("generate --model '" + tiny() + "' --prompt x --preview-vae-tiny random:taesd").code == 2);
  CHECK(run_sd("generate --model '" + tiny() + "' --prompt x --preview '" + preview.string() +
                "' --preview-every 0").code == 2);
}

TEST_CASE("sd generate --no-cuda-graphs is accepted on the CPU and the sidecar says no graph ran", "[unit][cli]") {
  for (const std::string flag : {"", " --no-cuda-graphs"}) {
    INFO("flag:" << flag);
    const auto png = temp_dir() / "graphs.png";
    auto r = run_sd("generate --model '" + tiny() + "' --prompt 'a fox' --steps 1 --height 64 --width 64 -q" + flag +
                    " -o '" + png.string() + "'");
    REQUIRE(r.code == 0);
    const auto sidecar = nlohmann::json::parse(slurp(temp_dir() / "graphs.json"));
    REQUIRE(sidecar.contains("cuda_graph"));
    CHECK(sidecar["cuda_graph"] == false);
  }
}

TEST_CASE("sd reports bad arguments with exit code 2 and runtime errors with 1", "[unit][cli]") {
  CHECK(run_sd("generate").code == 2);                                   // --prompt missing
  CHECK(run_sd("generate --prompt x --precision fp64").code == 2);       // not a precision
  CHECK(run_sd("frobnicate").code == 2);
  auto missing = run_sd("generate --model /no/such/model --prompt x -o '" + (temp_dir() / "x.png").string() + "'");
  CHECK(missing.code == 1);
  CHECK(missing.err.find("/no/such/model") != std::string::npos);
  // What the command line alone gets wrong is a usage error (2), said in one line.
  auto odd = run_sd("generate --model '" + tiny() + "' --prompt x --height 60 -o '" + (temp_dir() / "y.png").string() + "'");
  CHECK(odd.code == 2);
  CHECK(odd.err.find("multiple of 8") != std::string::npos);
  CHECK_FALSE(fs::exists(temp_dir() / "y.png"));
  for (const char* bad : {"--guidance nan", "--guidance inf", "--eta -1", "--threads -3", "--width 0"}) {
    INFO(bad);
    auto r = run_sd("generate --model '" + tiny() + "' --prompt x " + bad + " -o '" + (temp_dir() / "y.png").string() + "'");
    CHECK(r.code == 2);
    CHECK_FALSE(fs::exists(temp_dir() / "y.png"));
  }
  CHECK(run_sd("generate --help").code == 0);
}

TEST_CASE("sd tokenize prints the 77 ids diffusers uses and warns on truncation", "[unit][cli]") {
  auto r = run_sd("tokenize --model '" + tiny() + "' --prompt 'a photo of an astronaut riding a horse on mars' --pieces");
  REQUIRE(r.code == 0);
  std::istringstream lines(r.out);
  std::string ids_line, pieces_line;
  std::getline(lines, ids_line);
  std::getline(lines, pieces_line);
  auto ids = nlohmann::json::parse(ids_line);
  REQUIRE(ids.size() == 77);
  CHECK(ids[0] == 49406);
  CHECK(ids[1] == 320);
  CHECK(ids[11] == 49407);
  CHECK(nlohmann::json::parse(pieces_line)[1] == "a</w>");
  std::string long_prompt;
  for (int i = 0; i < 100; ++i) long_prompt += "word ";
  auto t = run_sd("tokenize --model random:sd-v1-5 --prompt '" + long_prompt + "'");
  CHECK(t.code == 0);
  CHECK(t.err.find("25 beyond the limit") != std::string::npos);
}

TEST_CASE("sd inspect describes a diffusers folder and a single-file checkpoint", "[unit][cli]") {
  auto r = run_sd("inspect '" + tiny() + "' --keys");
  REQUIRE(r.code == 0);
  CHECK(r.out.find("diffusers folder") != std::string::npos);
  CHECK(r.out.find("unet: ") != std::string::npos);
  CHECK(r.out.find("0 differences") != std::string::npos);
}

TEST_CASE("sd --version names LibTorch, its CUDA and the visible devices", "[unit][cli]") {
  auto r = run_sd("--version");
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::StartsWith("libsd "));
  CHECK_THAT(r.out, Catch::Contains("LibTorch " TORCH_VERSION));
#ifdef LIBSD_TEST_EXPECT_CUDA
  // A LibTorch with CUDA: the CUDA runtime version and the device count are reported.
  CHECK_THAT(r.out, Catch::Contains(", CUDA 1"));
  CHECK_THAT(r.out, Catch::Contains("CUDA device"));
#else
  CHECK_THAT(r.out, Catch::Contains("no CUDA"));
#endif
}
