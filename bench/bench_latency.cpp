// bench_latency: end-to-end and per-stage latency of one generation, per precision x batch x steps.
// Each precision is loaded once; each configuration runs --warmup untimed generations, then
// --repeats timed ones. Stage times come from sd::GenerateResult::timings (synchronized on CUDA).
#include <cmath>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <optional>

#include "common.h"
#include "sd/build_info.h"
#include "cuda_stats.h"
#include "op_profile.h"
#include "sd/error.h"
#include "sd/flops.h"
#include "sd/pipeline.h"

namespace {

using sd_bench::Row;

struct LatencyArgs {
  sd_bench::CommonOptions common;
  sd_bench::OutputOptions output;
  std::string precisions = "fp32", batches = "1", steps = "50";
  int warmup = 1, repeats = 3;
  std::string peak_tflops;  // "X" for every precision, or "fp32=X,bf16=Y,..."
  bool flops_only = false;
  std::string profile;  // CSV of per-operator times from one extra, untimed generation
  // Image-to-image: time it from this image, or from a synthetic one of the configured size.
  std::optional<double> strength;
  std::string init_image;
};

// The init image of an image-to-image measurement: compute does not depend on its content, so a
// smooth synthetic picture of the configured size serves when no file is given.
sd::Image bench_init_image(const LatencyArgs& a) {
  if (!a.init_image.empty()) return sd::read_image(a.init_image);
  sd::Image image;
  image.width = a.common.width;
  image.height = a.common.height;
  image.rgb.resize(static_cast<size_t>(image.width) * image.height * 3);
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; ++x) {
      uint8_t* p = &image.rgb[(static_cast<size_t>(y) * image.width + x) * 3];
      p[0] = static_cast<uint8_t>(255 * x / std::max(1, image.width - 1));
      p[1] = static_cast<uint8_t>(255 * y / std::max(1, image.height - 1));
      p[2] = 128;
    }
  }
  return image;
}

// --peak-tflops: "" -> none; "X" -> X for every precision (key ""); "fp32=X,bf16=Y" -> per precision label.
std::map<std::string, double> parse_peaks(const std::string& text) {
  std::map<std::string, double> out;
  for (const auto& item : sd_bench::split_list(text)) {
    const auto eq = item.find('=');
    const std::string key = eq == std::string::npos ? "" : item.substr(0, eq);
    const std::string number = eq == std::string::npos ? item : item.substr(eq + 1);
    double value = 0;
    size_t used = 0;
    try {
      value = std::stod(number, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (!(used == number.size() && std::isfinite(value) && value > 0)) {
      throw sd_bench::UsageError("--peak-tflops: expected a positive number or PRECISION=NUMBER, got '" + item + "'");
    }
    if (!key.empty()) sd_bench::parse_precision(key);  // a known name
    out[key] = value;
  }
  return out;
}

std::optional<double> peak_for(const std::map<std::string, double>& peaks, const std::string& precision) {
  if (auto it = peaks.find(precision); it != peaks.end()) return it->second;
  if (auto it = peaks.find(""); it != peaks.end()) return it->second;
  return std::nullopt;
}

Row flops_row(const LatencyArgs& a, int batch) {
  const bool guidance = a.common.guidance > 1.0;
  const auto flops = sd::model_flops(a.common.model, batch, guidance, a.common.height, a.common.width);
  Row row;
  row["model"] = a.common.model;
  row["batch"] = batch;
  row["height"] = a.common.height;
  row["width"] = a.common.width;
  row["unet_batch"] = flops.unet_batch;
  row["unet_gflop"] = {{"conv", flops.unet.conv / 1e9},
                       {"linear", flops.unet.linear / 1e9},
                       {"attention", flops.unet.attention / 1e9},
                       {"total", flops.unet.total() / 1e9}};
  row["vae_decode_gflop"] = flops.vae_decode.total() / 1e9;
  return row;
}

// One extra generation under the operator profiler, after the timed ones (its observer costs a
// little per operator, so it never feeds the latency figures). Prints the largest entries.
std::vector<Row> profile_rows(sd::Pipeline& pipe, const LatencyArgs& a, const sd::GenerateOptions& gen,
                              const Row& config) {
  sd_bench::OpProfiler profiler;
  const auto start = std::chrono::steady_clock::now();
  pipe.generate(a.common.prompt, gen);
  const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto ops = profiler.stop();
  std::map<std::string, double> stage_s;  // the stage scopes' own totals
  for (const auto& op : ops) {
    if (op.op == op.stage) stage_s[op.stage] += op.total_s;
  }
  std::vector<Row> rows;
  sd_bench::Table table({"stage", "operator", "calls", "self s", "% of stage"});
  for (const auto& op : ops) {
    const double stage_total = op.stage.empty() ? wall_s : stage_s[op.stage];
    Row row = config;
    row["generation_s"] = wall_s;
    row["stage"] = op.stage;
    row["op"] = op.op;
    row["calls"] = op.calls;
    row["self_s"] = op.self_s;
    row["total_s"] = op.total_s;
    row["self_share_of_stage"] = stage_total > 0 ? op.self_s / stage_total : 0.0;
    rows.push_back(row);
    if (table.size() < 20) {
      table.add({op.stage, op.op, std::to_string(op.calls), sd_bench::fixed(op.self_s, 3),
                 sd_bench::fixed(100.0 * row["self_share_of_stage"].get<double>(), 1)});
    }
  }
  std::cout << "profile of one generation (" << sd_bench::fixed(wall_s, 3) << " s, " << config["precision"].get<std::string>()
            << ", batch " << config["batch"] << ", steps " << config["steps"] << "):\n"
            << table.str();
  return rows;
}

int run(const LatencyArgs& a) {
  sd_bench::Progress progress("bench_latency", a.common.quiet);
  const auto precisions = sd_bench::parse_precision_list(a.precisions);
  const auto batches = sd_bench::parse_positive_int_list(a.batches, "--batch");
  const auto step_counts = sd_bench::parse_positive_int_list(a.steps, "--steps");
  SD_CHECK(a.repeats >= 1, "--repeats must be at least 1, got ", a.repeats);
  SD_CHECK(a.warmup >= 0, "--warmup must be >= 0, got ", a.warmup);
  const auto peaks = parse_peaks(a.peak_tflops);

  if (a.flops_only) {
    std::vector<Row> rows;
    sd_bench::Table table({"batch", "unet batch", "UNet GFLOP", "conv", "linear", "attention", "VAE decode GFLOP"});
    for (int batch : batches) {
      rows.push_back(flops_row(a, batch));
      const auto& r = rows.back();
      table.add({std::to_string(batch), r["unet_batch"].dump(), sd_bench::fixed(r["unet_gflop"]["total"], 1),
                 sd_bench::fixed(r["unet_gflop"]["conv"], 1), sd_bench::fixed(r["unet_gflop"]["linear"], 1),
                 sd_bench::fixed(r["unet_gflop"]["attention"], 1), sd_bench::fixed(r["vae_decode_gflop"], 1)});
    }
    std::cout << table.str();
    if (!a.output.json.empty()) sd_bench::append_json_rows(a.output.json, rows);
    if (!a.output.csv.empty()) sd_bench::append_csv_rows(a.output.csv, rows);
    return 0;
  }

  const bool image_to_image = a.strength.has_value();
  const sd::Image init_image = image_to_image ? bench_init_image(a) : sd::Image{};
  const bool cuda = sd_bench::is_cuda_device(a.common.device);
  const int cuda_index = cuda ? sd_bench::cuda_index(a.common.device) : 0;
  const std::string device = sd_bench::device_name(a.common.device);
  std::vector<Row> rows;
  sd_bench::Table table({"precision", "batch", "steps", "UNet evals", "latency s (median)", "p90", "stdev",
                         "UNet s/eval", "TFLOP/s", "text enc s", "VAE enc s", "VAE s", "peak mem"});

  std::vector<Row> profiles;
  std::vector<std::string> failures;
  int threads = at::get_num_threads();  // what the pipelines used, for the header line
  for (const auto& precision : precisions) {
    // A precision that fails (autocast on some LibTorch builds, say) does not cost the others.
    sd_bench::guarded(precision.label, &failures, [&] {
      progress("loading " + a.common.model + " in " + precision.label + " on " + a.common.device);
      sd::LoadOptions load = sd_bench::make_load_options(a.common, precision);
      load.vae_encoder = image_to_image;
      auto pipe = sd::Pipeline::load(a.common.model, load);
      const double load_s = pipe.info().load_s;
      threads = pipe.threads();
      for (int batch : batches) {
        const auto flops = sd::model_flops(a.common.model, batch, a.common.guidance > 1.0, a.common.height, a.common.width);
        for (int steps : step_counts) {
          auto gen = sd_bench::make_generate_options(a.common, steps, batch);
          if (image_to_image) {
            gen.init_image = init_image;
            gen.strength = a.strength;
          }
          const std::string config = precision.label + " batch " + std::to_string(batch) + " steps " + std::to_string(steps);
          // A new peak window per configuration: loading and earlier configurations do not count.
          if (cuda) {
            sd_bench::cuda_empty_cache();
            sd_bench::cuda_reset_peak_memory(cuda_index);
          }
          const bool rss_window = sd_bench::reset_peak_rss();
          for (int w = 0; w < a.warmup; ++w) {
            progress(config + ": warmup " + std::to_string(w + 1) + "/" + std::to_string(a.warmup));
            pipe.generate(a.common.prompt, gen);
          }
          std::vector<double> latency, unet, text, encode, decode, scheduler, denoise;
          int unet_evals = 0;
          for (int r = 0; r < a.repeats; ++r) {
            const auto result = pipe.generate(a.common.prompt, gen);
            const auto& t = result.timings;
            latency.push_back(t.total_s);
            unet.insert(unet.end(), t.unet_s.begin(), t.unet_s.end());
            text.push_back(t.text_encoder_s);
            decode.push_back(t.decode_s);
            encode.push_back(t.encode_s);
            scheduler.push_back(sd_bench::sum(t.scheduler_s));
            denoise.push_back(t.denoise_s);
            unet_evals = static_cast<int>(t.unet_s.size());
            progress(config + ": run " + std::to_string(r + 1) + "/" + std::to_string(a.repeats) + " " +
                     sd_bench::fixed(t.total_s, 3) + " s");
          }
          const auto memory = sd_bench::device_memory(a.common.device);
          const auto lat = sd_bench::summarize(latency);
          const auto per_eval = sd_bench::summarize(unet);
          const double tflops = per_eval.median > 0 ? flops.unet.total() / per_eval.median / 1e12 : 0.0;
          const double decode_s = sd_bench::summarize(decode).median;

          Row row;
          row["device"] = device;
          row["device_type"] = cuda ? "cuda" : "cpu";
          sd_bench::add_build_columns(row);
          row["git_revision"] = sd_bench::git_revision();
          row["threads"] = pipe.threads();
          row["model"] = a.common.model;
          row["precision"] = precision.label == "autocast" ? sd::precision_name(precision.precision) : precision.label;
          row["autocast"] = precision.autocast;
          row["channels_last"] = !a.common.no_channels_last;
          row["prepack_max_pixels"] = pipe.prepack_max_pixels();
          row["scheduler"] = a.common.scheduler;
          row["steps"] = steps;
          row["batch"] = batch;
          row["height"] = a.common.height;
          row["width"] = a.common.width;
          row["guidance"] = a.common.guidance;
          row["mode"] = image_to_image ? "img2img" : "txt2img";
          row["strength"] = image_to_image ? Row(*a.strength) : Row(nullptr);
          row["warmup"] = a.warmup;
          row["repeats"] = a.repeats;
          row["load_s"] = load_s;
          row["latency_s"] = sd_bench::stats_json(lat);
          row["unet_eval_s"] = sd_bench::stats_json(per_eval);
          row["unet_evals"] = unet_evals;
          row["text_encoder_s"] = sd_bench::summarize(text).median;
          row["scheduler_s"] = sd_bench::summarize(scheduler).median;
          row["vae_decode_s"] = decode_s;
          row["vae_encode_s"] = sd_bench::summarize(encode).median;
          row["denoise_s"] = sd_bench::summarize(denoise).median;
          row["images_per_min"] = lat.median > 0 ? 60.0 * batch / lat.median : 0.0;
          row["peak_rss_bytes"] = sd_bench::optional_json(sd_bench::peak_rss_bytes());
          row["peak_rss_window"] = rss_window ? "configuration" : "process";
          row["peak_device_allocated_bytes"] = memory ? Row(memory->peak_allocated) : Row(nullptr);
          row["peak_device_reserved_bytes"] = memory ? Row(memory->peak_reserved) : Row(nullptr);
          row["reserved_after_run_bytes"] = memory ? Row(memory->reserved) : Row(nullptr);
          row["unet_batch"] = flops.unet_batch;
          row["unet_gflop"] = flops.unet.total() / 1e9;
          row["unet_tflops"] = tflops;
          row["vae_decode_tflops"] = decode_s > 0 ? flops.vae_decode.total() / decode_s / 1e12 : 0.0;
          const auto peak = peak_for(peaks, precision.label);
          row["peak_tflops"] = peak ? Row(*peak) : Row(nullptr);
          row["fraction_of_peak"] = peak ? Row(tflops / *peak) : Row(nullptr);
          rows.push_back(row);

          if (!a.profile.empty()) {
            progress(config + ": profiled run");
            Row profile_config;
            for (const char* key : {"device", "libtorch", "git_revision", "threads", "model", "precision", "autocast",
                                    "channels_last", "prepack_max_pixels", "scheduler", "steps", "batch", "height", "width"}) {
              profile_config[key] = row[key];
            }
            for (auto& r : profile_rows(pipe, a, gen, profile_config)) profiles.push_back(std::move(r));
          }

          const auto peak_memory = memory ? std::optional<int64_t>(memory->peak_reserved) : sd_bench::peak_rss_bytes();
          table.add({precision.label, std::to_string(batch), std::to_string(steps), std::to_string(unet_evals),
                     sd_bench::fixed(lat.median, 3), sd_bench::fixed(lat.p90, 3), sd_bench::fixed(lat.stdev, 3),
                     sd_bench::fixed(per_eval.median, 3), sd_bench::fixed(tflops, 3),
                     sd_bench::fixed(row["text_encoder_s"], 3), sd_bench::fixed(row["vae_encode_s"], 3),
                     sd_bench::fixed(decode_s, 3), sd_bench::format_bytes(peak_memory)});
        }
      }
    });
  }

  std::cout << "device: " << device << "  " << sd::build_info_line() << "  git "
            << sd_bench::git_revision() << "  threads " << threads << "  scheduler "
            << a.common.scheduler << "  " << a.common.width << "x" << a.common.height << "\n"
            << table.str();
  if (!a.output.json.empty()) sd_bench::append_json_rows(a.output.json, rows);
  sd_bench::write_csv_output(a.output, rows, [](const Row& row) { return row["latency_s"]["mean"]; });
  if (!a.profile.empty()) sd_bench::write_csv_rows(a.profile, profiles);
  return sd_bench::report_failures(failures);
}

}  // namespace

int main(int argc, char** argv) {
  LatencyArgs a;
  CLI::App app{"bench_latency - latency of one generation per precision, batch and step count (libsd)"};
  sd_bench::add_common_options(app, a.common);
  sd_bench::add_output_options(app, a.output, true);
  app.add_option("--precision", a.precisions, "comma list of fp32, tf32, fp16, bf16, autocast")->capture_default_str();
  app.add_option("--batch", a.batches, "comma list of batch sizes (images per generation)")->capture_default_str();
  app.add_option("--steps", a.steps, "comma list of step counts")->capture_default_str();
  app.add_option("--warmup", a.warmup, "untimed generations per configuration")->capture_default_str()
      ->check(CLI::Range(0, 1000000));
  app.add_option("--repeats", a.repeats, "timed generations per configuration")->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  app.add_option("--peak-tflops", a.peak_tflops,
                 "the device's peak TFLOP/s for fraction_of_peak: one number, or per precision as fp32=X,bf16=Y");
  app.add_option("--profile", a.profile,
                 "after the timed runs, profile one more generation per configuration and write its per-operator "
                 "times (self and total seconds per stage) to this CSV file");
  app.add_flag("--flops-only", a.flops_only, "print the analytic FLOP counts and exit (loads no weights)");
  auto* strength = app.add_option("--strength", a.strength,
                                  "time image-to-image at this strength in [0, 1]: int(steps x strength) UNet steps "
                                  "plus the VAE encode (init image: --init-image, else a synthetic one)");
  strength->check(CLI::Range(0.0, 1.0));
  app.add_option("--init-image", a.init_image, "PNG/JPEG init image for --strength")->needs(strength);
  return sd_bench::run_tool(app, argc, argv, [&] { return run(a); });
}
