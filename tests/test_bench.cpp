// The benchmark tools (bench/) run end to end on the tiny golden pipeline at 64x64 with few steps:
// their CSV headers match every row, their JSON parses with the documented fields and sane values,
// and the images, metrics and charts they promise are written.
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "golden.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

fs::path bench_dir() {
  const char* env = std::getenv("LIBSD_BIN_DIR");
  return fs::path(env != nullptr && *env != '\0' ? env : LIBSD_BINARY_DIR) / "bench";
}

std::string tool(const std::string& name) {
  const auto path = bench_dir() / name;
  INFO("benchmark tool " << path << " (built by the bench/ targets: cmake --build build)");
  REQUIRE(fs::exists(path));
  return path.string();
}

std::string tiny_pipeline() { return fs::absolute(golden::dir() / "pipelines/sd1_tiny").string(); }

std::string quoted(const std::string& s) { return "'" + s + "'"; }

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A fresh folder per test, removed afterwards.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name)
      : path(fs::temp_directory_path() / ("libsd_test_bench_" + std::to_string(::getpid()) + "_" + name)) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path operator/(const std::string& name) const { return path / name; }
};

struct Run {
  int code = -1;
  std::string out, err;
};

// Runs `args` with stdout and stderr captured in `dir`.
Run run_tool(const TempDir& dir, const std::string& args) {
  const auto out = dir / "stdout.txt", err = dir / "stderr.txt";
  const std::string command = args + " > " + quoted(out.string()) + " 2> " + quoted(err.string());
  const int status = std::system(command.c_str());
  Run r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_text(out);
  r.err = read_text(err);
  return r;
}

// `expr` is evaluated once (it usually runs a tool).
#define REQUIRE_RUN_OK(expr)                                                   \
  do {                                                                         \
    const Run run_result_ = (expr);                                            \
    INFO("stdout:\n" << run_result_.out << "\nstderr:\n" << run_result_.err);   \
    REQUIRE(run_result_.code == 0);                                            \
  } while (0)

// CSV with quoted fields, as the tools write it.
std::vector<std::vector<std::string>> read_csv(const fs::path& path) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream in(read_text(path));
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> fields(1);
    bool quoted_field = false;
    for (size_t i = 0; i < line.size(); ++i) {
      const char c = line[i];
      if (quoted_field) {
        if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
          fields.back() += '"';
          ++i;
        } else if (c == '"') {
          quoted_field = false;
        } else {
          fields.back() += c;
        }
      } else if (c == '"') {
        quoted_field = true;
      } else if (c == ',') {
        fields.emplace_back();
      } else {
        fields.back() += c;
      }
    }
    rows.push_back(fields);
  }
  return rows;
}

// Every row as wide as the header; returns the header.
std::vector<std::string> check_csv_shape(const fs::path& path, size_t expected_rows) {
  const auto rows = read_csv(path);
  REQUIRE(rows.size() == expected_rows + 1);
  for (size_t i = 1; i < rows.size(); ++i) {
    INFO(path << " row " << i);
    CHECK(rows[i].size() == rows[0].size());
  }
  return rows[0];
}

size_t column(const std::vector<std::string>& header, const std::string& name) {
  for (size_t i = 0; i < header.size(); ++i) {
    if (header[i] == name) return i;
  }
  FAIL("column " << name << " not in the CSV header");
  return 0;
}

json read_json(const fs::path& path) { return json::parse(read_text(path)); }

void check_stats(const json& s) {
  for (const char* key : {"mean", "median", "p90", "min", "max", "stdev"}) {
    INFO(key);
    REQUIRE(s.contains(key));
    CHECK(s[key].is_number());
  }
  CHECK(s["min"].get<double>() > 0);
  CHECK(s["min"].get<double>() <= s["median"].get<double>());
  CHECK(s["median"].get<double>() <= s["p90"].get<double>());
  CHECK(s["p90"].get<double>() <= s["max"].get<double>());
  CHECK(s["mean"].get<double>() >= s["min"].get<double>());
  CHECK(s["mean"].get<double>() <= s["max"].get<double>());
  CHECK(s["stdev"].get<double>() >= 0);
}

// sd1_tiny's configs with a 4-level VAE, which scales by 8 as TAESD does, for "random:" (the VAE's
// sample_size 64 makes 8-latent tiles: 128 px tiles).
std::string taesd_sized_model(const TempDir& dir) {
  const fs::path model = dir / "taesd_sized";
  fs::copy(tiny_pipeline(), model, fs::copy_options::recursive);
  json vae = json::parse(read_text(model / "vae/config.json"));
  vae["block_out_channels"] = {32, 32, 32, 32};
  vae["down_block_types"] = std::vector<std::string>(4, "DownEncoderBlock2D");
  vae["up_block_types"] = std::vector<std::string>(4, "UpDecoderBlock2D");
  std::ofstream(model / "vae/config.json") << vae.dump(2);
  return "random:" + model.string();
}

std::string taesd_dir() { return (fs::path(LIBSD_SOURCE_DIR) / "tests/data/vae/taesd").string(); }

std::string latency_command(const std::string& extra, int repeats = 2) {
  return quoted(tool("bench_latency")) + " --model " + quoted(tiny_pipeline()) +
         " --height 64 --width 64 --steps 2 --warmup 0 --threads 2 --repeats " + std::to_string(repeats) + " " + extra;
}

}  // namespace

TEST_CASE("bench_latency writes matching CSV and JSON rows with the documented fields", "[bench]") {
  // One sequence rather than SECTIONs: each section would re-run the measurements above it.
  TempDir dir("latency");
  const auto csv = dir / "latency.csv", js = dir / "latency.json";
  const auto run = run_tool(dir, latency_command("--precision fp32,tf32 --peak-tflops fp32=2 --csv " +
                                                 quoted(csv.string()) + " --json " + quoted(js.string())));
  REQUIRE_RUN_OK(run);
  CHECK(run.out.find("latency s (median)") != std::string::npos);  // the table on stdout

  const auto header = check_csv_shape(csv, 2);
  const auto rows = read_csv(csv);
  CHECK(rows[1][column(header, "precision")] == "fp32");
  CHECK(rows[2][column(header, "precision")] == "tf32");  // the same as fp32 on a CPU: cheap
  CHECK(std::stod(rows[1][column(header, "latency_s_median")]) > 0);

  const json j = read_json(js);
  REQUIRE(j.is_array());
  REQUIRE(j.size() == 2);
  for (const auto& row : j) {
    for (const char* key : {"device", "libtorch", "git_revision", "precision", "autocast", "scheduler", "steps", "batch",
                            "height", "width", "latency_s", "unet_eval_s", "unet_evals", "text_encoder_s",
                            "vae_decode_s", "scheduler_s", "peak_rss_bytes", "peak_device_allocated_bytes",
                            "peak_device_reserved_bytes", "reserved_after_run_bytes", "unet_tflops", "fraction_of_peak"}) {
      INFO(key);
      CHECK(row.contains(key));
    }
    CHECK(!row["device"].get<std::string>().empty());
    CHECK(row["libtorch"].get<std::string>().find('.') != std::string::npos);
    CHECK(row["scheduler"] == "pndm");
    CHECK(row["steps"] == 2);
    CHECK(row["batch"] == 1);
    CHECK(row["height"] == 64);
    CHECK(row["width"] == 64);
    CHECK(row["autocast"] == false);
    check_stats(row["latency_s"]);
    check_stats(row["unet_eval_s"]);
    // PNDM repeats its second timestep: 2 steps are 3 UNet evaluations (PORTING-NOTES).
    CHECK(row["unet_evals"] == 3);
    // Stages fit inside the whole.
    CHECK(row["text_encoder_s"].get<double>() > 0);
    CHECK(row["vae_decode_s"].get<double>() > 0);
    CHECK(row["unet_eval_s"]["median"].get<double>() * 3 <= row["latency_s"]["max"].get<double>());
    CHECK(row["peak_rss_bytes"].get<int64_t>() > 10'000'000);
    CHECK(row["peak_device_allocated_bytes"].is_null());  // CPU
    CHECK(row["reserved_after_run_bytes"].is_null());
    CHECK(row["unet_tflops"].get<double>() > 0);
    // The library's estimate of the largest stage, beside what the run added to the RSS.
    CHECK((row["estimated_stage"] == "the UNet" || row["estimated_stage"] == "the VAE decode"));
    CHECK(row["estimated_peak_bytes"].get<int64_t>() > 0);
    REQUIRE(row.contains("measured_increase_bytes"));
    CHECK(row["measured_over_estimate"].is_null() == row["measured_increase_bytes"].is_null());
  }
  CHECK(j[0]["fraction_of_peak"].get<double>() == Approx(j[0]["unet_tflops"].get<double>() / 2));
  CHECK(j[1]["fraction_of_peak"].is_null());  // no peak given for tf32

  // A second run appends rows under the same header.
  REQUIRE_RUN_OK(
      run_tool(dir, latency_command("--precision fp32 --csv " + quoted(csv.string()) + " --json " + quoted(js.string()), 1)));
  check_csv_shape(csv, 3);
  CHECK(read_json(js).size() == 3);

  // --csv-format lambda writes the seed study's columns.
  const auto lambda = dir / "lambda.csv";
  REQUIRE_RUN_OK(
      run_tool(dir, latency_command("--precision fp32 --csv-format lambda --csv " + quoted(lambda.string()), 1)));
  check_csv_shape(lambda, 1);
  CHECK(read_text(lambda).substr(0, read_text(lambda).find('\n')) ==
        "device,precision,autocast,xformers,runtime,n_samples,latency,memory");
  const auto lrows = read_csv(lambda);
  CHECK(lrows[1][1] == "single");
  CHECK(lrows[1][2] == "no");
  CHECK(lrows[1][5] == "1");
  CHECK(std::stod(lrows[1][6]) > 0);

  // A file with another header is refused and left untouched.
  const std::string before = read_text(lambda);
  const auto refused = run_tool(dir, latency_command("--precision fp32 --csv " + quoted(lambda.string()), 1));
  CHECK(refused.code == 1);
  CHECK(refused.err.find("different header") != std::string::npos);
  CHECK(read_text(lambda) == before);
}

TEST_CASE("bench_latency measures each decoder, in whole generations and as the decode stage alone", "[bench]") {
  TempDir dir("decoders");
  const std::string model = taesd_sized_model(dir);
  const std::string base = quoted(tool("bench_latency")) + " --model " + quoted(model) + " --vae-tiny " +
                           quoted(taesd_dir()) + " --height 128 --width 128 --warmup 0 --threads 2 --repeats 2 ";
  const auto js = dir / "decode.json", csv = dir / "decode.csv";
  const auto run = run_tool(dir, base + "--stage decode --decoder vae,tiled,tiny --batch 1,2 --json " +
                                     quoted(js.string()) + " --csv " + quoted(csv.string()));
  REQUIRE_RUN_OK(run);
  CHECK(run.out.find("decode s (median)") != std::string::npos);
  check_csv_shape(csv, 6);
  const json j = read_json(js);
  REQUIRE(j.size() == 6);  // 3 decoders x 2 batches
  const std::vector<std::string> decoders{"vae", "vae", "tiled", "tiled", "tiny", "tiny"};
  for (size_t i = 0; i < j.size(); ++i) {
    const auto& row = j[i];
    INFO("row " << i << ": " << row.dump());
    CHECK(row["stage"] == "decode");
    CHECK(row["decoder"] == decoders[i]);
    CHECK(row["decoder_class"] == (decoders[i] == "tiny" ? "AutoencoderTiny" : "AutoencoderKL"));
    CHECK(row["batch"] == (i % 2 == 0 ? 1 : 2));
    CHECK(row["steps"].is_null());
    check_stats(row["vae_decode_s"]);
    CHECK(row["images_per_min"].get<double>() > 0);
    CHECK(row["peak_rss_bytes"].get<int64_t>() > 10'000'000);
    REQUIRE(row.contains("decode_rss_increase_bytes"));
    if (!row["decode_rss_increase_bytes"].is_null()) CHECK(row["decode_rss_increase_bytes"].get<int64_t>() >= 0);
    // FLOP/s only for the decoder the analytic count describes.
    CHECK(row["vae_decode_tflops"].is_null() == (decoders[i] != "vae"));
  }

  // Whole generations with TAESD as the decoder: its decode stage in the row.
  const auto gen = dir / "generate.json";
  REQUIRE_RUN_OK(run_tool(dir, base + "--steps 1 --decoder tiny --json " + quoted(gen.string())));
  const json g = read_json(gen);
  REQUIRE(g.size() == 1);
  CHECK(g[0]["stage"] == "generate");
  CHECK(g[0]["decoder"] == "tiny");
  CHECK(g[0]["decoder_class"] == "AutoencoderTiny");
  CHECK(g[0]["vae_decode_s"].get<double>() > 0);
  CHECK(g[0]["vae_decode_tflops"].is_null());
  CHECK(g[0]["estimated_stage"] == "the UNet");  // TAESD's decode is not estimated: the UNet is the peak
  // The decode stage's rows carry the VAE decode's estimate; TAESD's have none (0).
  CHECK(j[0]["estimated_stage"] == "the VAE decode");
  CHECK(j[0]["estimated_peak_bytes"].get<int64_t>() > 0);
  CHECK(j[1]["estimated_peak_bytes"].get<int64_t>() > j[0]["estimated_peak_bytes"].get<int64_t>());  // batch 2
  CHECK(j[4]["estimated_peak_bytes"] == 0);
  CHECK(j[4]["measured_over_estimate"].is_null());

  // Generations that stop at the latents: no decode, and the UNet's estimate.
  const auto denoise = dir / "denoise.json";
  REQUIRE_RUN_OK(run_tool(dir, base + "--steps 1 --stage denoise --json " + quoted(denoise.string())));
  const json d = read_json(denoise);
  REQUIRE(d.size() == 1);
  CHECK(d[0]["stage"] == "denoise");
  CHECK(d[0]["vae_decode_s"].get<double>() == 0);
  CHECK(d[0]["unet_eval_s"]["median"].get<double>() > 0);
  CHECK(d[0]["estimated_stage"] == "the UNet");
  CHECK(run_tool(dir, base + "--stage denoise --decoder tiny").code == 2);

  // What the decode stage cannot combine with, and unknown decoders: usage errors.
  CHECK(run_tool(dir, base + "--stage decode --strength 0.5").code == 2);
  CHECK(run_tool(dir, base + "--stage decode --csv-format lambda --csv " + quoted((dir / "l.csv").string())).code == 2);
  CHECK(run_tool(dir, base + "--decoder vae,huge").code == 2);
  CHECK(run_tool(dir, base + "--stage encode").code == 2);
}

TEST_CASE("bench_latency --profile attributes one extra generation's time to operators and stages", "[bench]") {
  TempDir dir("profile");
  const auto profile = dir / "profile.csv", js = dir / "latency.json";
  const auto run = run_tool(dir, latency_command("--precision fp32 --profile " + quoted(profile.string()) + " --json " +
                                                     quoted(js.string()),
                                                 1));
  REQUIRE_RUN_OK(run);
  CHECK(run.out.find("profile of one generation") != std::string::npos);
  CHECK(read_json(js).size() == 1);  // the profiled generation adds no latency row

  const auto rows = read_csv(profile);
  REQUIRE(rows.size() > 10);
  const auto& header = rows[0];
  const size_t stage = column(header, "stage"), op = column(header, "op"), calls = column(header, "calls");
  const size_t self = column(header, "self_s"), total = column(header, "total_s");
  const size_t generation = column(header, "generation_s");
  double self_sum = 0, unet_total = 0, decode_total = 0;
  bool has_conv = false, has_attention = false;
  for (size_t i = 1; i < rows.size(); ++i) {
    INFO("row " << i << ": " << rows[i][stage] << " " << rows[i][op]);
    REQUIRE(rows[i].size() == header.size());
    CHECK(std::stoll(rows[i][calls]) >= 1);
    CHECK(std::stod(rows[i][self]) <= std::stod(rows[i][total]) + 1e-9);
    self_sum += std::stod(rows[i][self]);
    if (rows[i][stage] == "sd::unet" && rows[i][op] == "sd::unet") {
      unet_total = std::stod(rows[i][total]);
      CHECK(rows[i][calls] == "3");  // PNDM, 2 steps: 3 UNet evaluations
    }
    if (rows[i][op] == "sd::vae_decode") decode_total = std::stod(rows[i][total]);
    if (rows[i][stage] == "sd::unet" && rows[i][op].find("convolution") != std::string::npos) has_conv = true;
    if (rows[i][stage] == "sd::unet" && rows[i][op] == "sd::fused_attention") has_attention = true;
  }
  CHECK(has_conv);
  CHECK(has_attention);
  CHECK(unet_total > 0);
  CHECK(decode_total > 0);
  // Self times partition the time spent inside operators, which lies within the generation.
  const double wall = std::stod(rows[1][generation]);
  CHECK(self_sum <= wall * 1.01);
  CHECK(unet_total + decode_total <= wall * 1.01);
}

TEST_CASE("bench_latency --flops-only reproduces the SD 1.5 FLOP counts of the porting notes", "[bench]") {
  // PORTING-NOTES / issue 8: one UNet forward at batch 1, 64x64 latents = 803 GFLOP (conv 444,
  // linear 233, attention 126); VAE decode at 512x512 = 2.51 TFLOP.
  TempDir dir("flops");
  const auto js = dir / "flops.json";
  const auto run = run_tool(dir, quoted(tool("bench_latency")) + " --flops-only --guidance 1 --height 512 --width 512 --json " +
                                     quoted(js.string()));
  REQUIRE_RUN_OK(run);
  const json j = read_json(js);
  REQUIRE(j.size() == 1);
  const auto& g = j[0]["unet_gflop"];
  CHECK(j[0]["unet_batch"] == 1);
  CHECK(g["total"].get<double>() == Approx(803).epsilon(0.02));
  CHECK(g["conv"].get<double>() == Approx(444).epsilon(0.02));
  CHECK(g["linear"].get<double>() == Approx(233).epsilon(0.02));
  CHECK(g["attention"].get<double>() == Approx(126).epsilon(0.02));
  CHECK(j[0]["vae_decode_gflop"].get<double>() == Approx(2510).epsilon(0.02));
}

TEST_CASE("bench_throughput measures a grid, searches the largest batch and records failures", "[bench]") {
  TempDir dir("throughput");
  const std::string base = quoted(tool("bench_throughput")) + " --model " + quoted(tiny_pipeline()) +
                           " --height 64 --width 64 --steps 1 --warmup 0 --threads 2 --precision fp32 ";

  SECTION("everything fits up to --max-batch") {
    const auto csv = dir / "thr.csv", js = dir / "thr.json";
    REQUIRE_RUN_OK(run_tool(dir, base + "--batch 1,2 --max-batch 3 --csv " + quoted(csv.string()) + " --json " +
                                     quoted(js.string())));
    // Batches 1 and 2 from the grid (reused by the search), 3 from the search: 3 rows.
    const auto header = check_csv_shape(csv, 3);
    const auto rows = read_csv(csv);
    for (size_t i = 1; i < rows.size(); ++i) {
      CHECK(rows[i][column(header, "ok")] == "true");
      CHECK(std::stod(rows[i][column(header, "images_per_min")]) > 0);
    }
    const json j = read_json(js);
    REQUIRE(j.is_array());
    REQUIRE(j.size() == 4);
    const auto& summary = j.back();
    CHECK(summary["kind"] == "summary");
    CHECK(summary["max_batch"] == 3);
    CHECK(summary["first_failed_batch"].is_null());
    CHECK(summary["gain_over_batch1"].get<double>() > 0);
  }

  SECTION("--decoder tiled searches the largest batch with VAE tiling on") {
    // sd1_tiny's VAE tiles 64 px at a time: 128 px images decode in 9 tiles.
    const auto js = dir / "tiled.json";
    REQUIRE_RUN_OK(run_tool(dir, quoted(tool("bench_throughput")) + " --model " + quoted(tiny_pipeline()) +
                                     " --height 128 --width 128 --steps 1 --warmup 0 --threads 2 --precision fp32 "
                                     "--decoder tiled --max-batch 2 --json " + quoted(js.string())));
    const json j = read_json(js);
    REQUIRE(j.size() == 3);  // batches 1 and 2, the summary
    for (const auto& row : j) CHECK(row["decoder"] == "tiled");
    CHECK(j[2]["kind"] == "summary");
    CHECK(j[2]["max_batch"] == 2);
  }

  SECTION("a memory limit below anything makes every try fail, recorded as ok = false") {
    const auto js = dir / "fail.json";
    REQUIRE_RUN_OK(run_tool(dir, base + "--max-batch 4 --max-memory 1000 --json " + quoted(js.string())));
    const json j = read_json(js);
    REQUIRE(j.size() == 2);  // batch 1 failed, summary
    CHECK(j[0]["ok"] == false);
    CHECK(j[0]["images_per_min"].is_null());
    CHECK(j[0]["error"].get<std::string>().find("--max-memory") != std::string::npos);
    CHECK(j[1]["max_batch"] == 0);
    CHECK(j[1]["first_failed_batch"] == 1);
  }
}

TEST_CASE("bench_quality compares two precisions per step count and per step, with images and metrics", "[bench]") {
  TempDir dir("quality");
  const std::string base = quoted(tool("bench_quality")) + " --model " + quoted(tiny_pipeline()) +
                           " --height 64 --width 64 --threads 2 ";

  SECTION("fp32 against bf16") {
    const auto out = dir / "q";
    REQUIRE_RUN_OK(run_tool(dir, base + "--pair fp32,bf16 --steps 2,3 --history-steps 2 --output-dir " + quoted(out.string())));
    // 2 final rows + 3 per-step rows (PNDM: 2 steps are 3 scheduler steps).
    const auto header = check_csv_shape(out / "metrics.csv", 5);
    for (const char* name : {"step", "psnr", "ssim", "max_abs", "mean_abs", "latent_max_abs", "latent_mean_abs"}) {
      column(header, name);
    }
    const json j = read_json(out / "metrics.json");
    REQUIRE(j.size() == 5);
    for (const auto& row : j) {
      INFO(row.dump());
      CHECK(row["ssim"].get<double>() <= 1.0 + 1e-9);
      CHECK(row["ssim"].get<double>() >= -1.0);
      CHECK(row["max_abs"].get<double>() >= 0);
      CHECK(row["max_abs"].get<double>() <= 255);
      CHECK(row["mean_abs"].get<double>() <= row["max_abs"].get<double>());
      CHECK(row["latent_mean_abs"].get<double>() <= row["latent_max_abs"].get<double>());
      CHECK((row["psnr"].is_null() || row["psnr"].get<double>() > 0));
      CHECK(fs::exists(out / row["image"].get<std::string>()));
    }
    CHECK(j[0]["run"] == "final");
    CHECK(j[0]["step"] == 2);
    CHECK(j[2]["run"] == "history");
    CHECK(j[4]["step"] == 3);
    for (const char* file : {"final_steps_002.png", "final_steps_003.png", "steps/step_001.png", "steps/step_003.png",
                             "contact_sheet.png", "init_latents.safetensors"}) {
      INFO(file);
      CHECK(fs::file_size(out / file) > 0);
    }
  }

  SECTION("a precision against itself: identical images (PSNR null, SSIM 1, no difference)") {
    const auto out = dir / "same";
    REQUIRE_RUN_OK(run_tool(dir, base + "--pair fp32,fp32 --steps 2 --history-steps 0 --output-dir " + quoted(out.string())));
    const json j = read_json(out / "metrics.json");
    REQUIRE(j.size() == 1);
    CHECK(j[0]["psnr"].is_null());
    CHECK(j[0]["ssim"].get<double>() == Approx(1.0).margin(1e-12));
    CHECK(j[0]["max_abs"] == 0);
    CHECK(j[0]["latent_max_abs"] == 0);
  }
}

TEST_CASE("bench/plot turns the CSVs into PNG charts", "[bench]") {
  if (std::system("command -v gnuplot > /dev/null 2>&1") != 0) {
    WARN("gnuplot not installed: bench/plot not tested");
    return;
  }
  TempDir dir("plot");
  const auto lat = dir / "lat.csv", thr = dir / "thr.csv", charts = dir / "charts";
  REQUIRE_RUN_OK(run_tool(dir, latency_command("--precision fp32,tf32 --quiet --csv " + quoted(lat.string()))));
  REQUIRE_RUN_OK(run_tool(dir, quoted(tool("bench_throughput")) + " --model " + quoted(tiny_pipeline()) +
                                   " --height 64 --width 64 --steps 1 --warmup 0 --threads 2 --quiet --precision fp32 "
                                   "--batch-grid 1,2 --no-search --csv " + quoted(thr.string())));
  REQUIRE_RUN_OK(run_tool(dir, quoted(tool("bench_quality")) + " --model " + quoted(tiny_pipeline()) +
                                   " --height 64 --width 64 --threads 2 --quiet --pair fp32,bf16 --steps 2 "
                                   "--history-steps 2 --output-dir " + quoted((dir / "q").string())));
  const auto run = run_tool(dir, "bench/plot --latency " + quoted(lat.string()) + " --throughput " + quoted(thr.string()) +
                                     " --quality " + quoted((dir / "q" / "metrics.csv").string()) + " --out " +
                                     quoted(charts.string()));
  REQUIRE_RUN_OK(run);
  for (const char* chart : {"latency.png", "stages.png", "memory.png", "throughput.png", "quality.png", "quality_steps.png"}) {
    INFO(chart);
    REQUIRE(fs::exists(charts / chart));
    const std::string png = read_text(charts / chart);
    CHECK(png.size() > 1000);
    CHECK(png.substr(1, 3) == "PNG");
  }
}
