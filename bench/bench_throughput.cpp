// bench_throughput: images per minute against batch size, and the largest batch that fits.
// The search doubles the batch until a try fails, then bisects between the last success and the
// first failure. A try fails on an out-of-memory error (CUDA: caught, the cache emptied before the
// next try) or, with --max-memory, when the peak memory of the try exceeds it (on the CPU that is
// the only safe way: the kernel's OOM killer cannot be caught). Failures are rows with ok = false.
#include <torch/torch.h>

#include <iostream>
#include <map>

#include "common.h"
#include "sd/build_info.h"
#include "cuda_stats.h"
#include "sd/error.h"
#include "sd/pipeline.h"

namespace {

using sd_bench::Row;

struct ThroughputArgs {
  sd_bench::CommonOptions common;
  sd_bench::OutputOptions output;
  std::string precisions;  // default: fp16 on CUDA, bf16 on CPU (the seed measured half precision)
  std::string grid;
  int steps = 50, warmup = 1, repeats = 1, max_batch = 64;
  bool no_search = false, vae_slicing = false;
  int64_t max_memory = 0;
};

struct Attempt {
  bool ok = false;
  Row row;
};

class Runner {
 public:
  Runner(const ThroughputArgs& a, const sd_bench::PrecisionSpec& precision, sd::Pipeline& pipe, sd_bench::Progress& progress)
      : a_(a), precision_(precision), pipe_(pipe), progress_(progress) {
    cuda_ = sd_bench::is_cuda_device(a.common.device);
    if (cuda_) cuda_index_ = sd_bench::cuda_index(a.common.device);
    device_ = sd_bench::device_name(a.common.device);
  }

  // Measures `batch` once (later calls return the first result, with its kind).
  const Attempt& attempt(int batch, const std::string& kind) {
    if (auto it = done_.find(batch); it != done_.end()) return it->second;
    Attempt& out = done_[batch];
    out.row = measure(batch, kind, &out.ok);
    order_.push_back(batch);
    return out;
  }

  std::vector<Row> rows() const {
    std::vector<Row> out;
    for (int batch : order_) out.push_back(done_.at(batch).row);
    return out;
  }
  const std::map<int, Attempt>& done() const { return done_; }

  double generate_once(int batch) {
    // With --vae-slicing the pipeline decodes one image at a time (LoadOptions::vae_slicing).
    return pipe_.generate(a_.common.prompt, sd_bench::make_generate_options(a_.common, a_.steps, batch)).timings.total_s;
  }

 private:
  Row measure(int batch, const std::string& kind, bool* ok) {
    const std::string config = precision_.label + " batch " + std::to_string(batch);
    progress_(config + " (" + kind + ")");
    if (cuda_) {
      sd_bench::cuda_empty_cache();
      sd_bench::cuda_reset_peak_memory(cuda_index_);
    }
    const bool rss_window = sd_bench::reset_peak_rss();
    std::vector<double> latency;
    std::string error;
    try {
      for (int r = 0; r < a_.repeats; ++r) latency.push_back(generate_once(batch));
    } catch (const std::exception& e) {
      if (!sd_bench::is_out_of_memory(e)) throw;
      error = "out of memory: " + sd_bench::without_backtrace(e.what());
      latency.clear();
      if (cuda_) sd_bench::cuda_empty_cache();
    }
    const auto memory = sd_bench::device_memory(a_.common.device);
    const auto rss = sd_bench::peak_rss_bytes();
    const std::optional<int64_t> peak = memory ? std::optional<int64_t>(memory->peak_reserved) : rss;
    if (error.empty() && a_.max_memory > 0 && peak && *peak > a_.max_memory) {
      error = "peak memory " + std::to_string(*peak) + " bytes exceeds --max-memory " + std::to_string(a_.max_memory);
    }
    *ok = error.empty();
    const double median = *ok ? sd_bench::summarize(latency).median : 0.0;
    progress_(config + ": " + (*ok ? sd_bench::fixed(median, 3) + " s" : error));

    Row row;
    row["kind"] = kind;
    row["device"] = device_;
    row["device_type"] = cuda_ ? "cuda" : "cpu";
    sd_bench::add_build_columns(row);
    row["git_revision"] = sd_bench::git_revision();
    row["threads"] = pipe_.threads();
    row["model"] = a_.common.model;
    row["precision"] = precision_.label == "autocast" ? sd::precision_name(precision_.precision) : precision_.label;
    row["autocast"] = precision_.autocast;
    row["scheduler"] = a_.common.scheduler;
    row["steps"] = a_.steps;
    row["batch"] = batch;
    row["height"] = a_.common.height;
    row["width"] = a_.common.width;
    row["guidance"] = a_.common.guidance;
    row["vae_slicing"] = a_.vae_slicing;
    row["repeats"] = a_.repeats;
    row["ok"] = *ok;
    row["error"] = error;
    row["latency_s"] = *ok ? Row(median) : Row(nullptr);
    row["images_per_min"] = *ok && median > 0 ? Row(60.0 * batch / median) : Row(nullptr);
    row["peak_rss_bytes"] = sd_bench::optional_json(rss);
    row["peak_rss_window"] = rss_window ? "try" : "process";
    row["peak_device_allocated_bytes"] = memory ? Row(memory->peak_allocated) : Row(nullptr);
    row["peak_device_reserved_bytes"] = memory ? Row(memory->peak_reserved) : Row(nullptr);
    row["reserved_after_run_bytes"] = memory ? Row(memory->reserved) : Row(nullptr);
    row["max_memory_bytes"] = a_.max_memory > 0 ? Row(a_.max_memory) : Row(nullptr);
    return row;
  }

  const ThroughputArgs& a_;
  const sd_bench::PrecisionSpec& precision_;
  sd::Pipeline& pipe_;
  sd_bench::Progress& progress_;
  bool cuda_ = false;
  int cuda_index_ = 0;
  std::string device_;
  std::map<int, Attempt> done_;
  std::vector<int> order_;
};

// Doubling, then bisection: returns the largest batch that succeeded (0 if batch 1 failed) and
// the smallest that failed (0 if none failed up to --max-batch).
std::pair<int, int> search_max_batch(Runner& runner, int limit) {
  int good = 0, bad = 0;
  for (int batch = 1;; batch *= 2) {
    const int b = std::min(batch, limit);
    if (runner.attempt(b, "search").ok) {
      good = b;
      if (b == limit) break;
    } else {
      bad = b;
      break;
    }
  }
  while (bad != 0 && bad - good > 1) {
    const int mid = good + (bad - good) / 2;
    if (runner.attempt(mid, "search").ok) {
      good = mid;
    } else {
      bad = mid;
    }
  }
  return {good, bad};
}

// Peak device memory on CUDA, peak RSS on the CPU.
std::optional<int64_t> peak_memory_of(const Row& row) {
  for (const char* key : {"peak_device_reserved_bytes", "peak_rss_bytes"}) {
    if (!row[key].is_null()) return row[key].get<int64_t>();
  }
  return std::nullopt;
}

int run(ThroughputArgs& a) {
  sd_bench::Progress progress("bench_throughput", a.common.quiet);
  const bool cuda = sd_bench::is_cuda_device(a.common.device);
  if (a.precisions.empty()) a.precisions = cuda ? "fp16" : "bf16";
  const auto precisions = sd_bench::parse_precision_list(a.precisions);
  const std::vector<int> grid = a.grid.empty() ? std::vector<int>{} : sd_bench::parse_positive_int_list(a.grid, "--batch");
  SD_CHECK(!grid.empty() || !a.no_search, "nothing to do: --no-search without --batch");
  SD_CHECK(a.max_batch >= 1, "--max-batch must be at least 1, got ", a.max_batch);
  SD_CHECK(a.repeats >= 1, "--repeats must be at least 1, got ", a.repeats);

  std::vector<Row> measurements, summaries;
  sd_bench::Table table({"precision", "kind", "batch", "ok", "latency s", "images/min", "peak mem"});
  std::string summary_text;
  std::vector<std::string> failures;
  for (const auto& precision : precisions) {
    // A precision that fails (autocast on some LibTorch builds, say) does not cost the others.
    sd_bench::guarded(precision.label, &failures, [&] {
      progress("loading " + a.common.model + " in " + precision.label + " on " + a.common.device);
      auto load = sd_bench::make_load_options(a.common, precision);
      load.vae_slicing = a.vae_slicing;
      auto pipe = sd::Pipeline::load(a.common.model, load);
      Runner runner(a, precision, pipe, progress);
      for (int w = 0; w < a.warmup; ++w) {
        progress(precision.label + ": warmup " + std::to_string(w + 1) + "/" + std::to_string(a.warmup) + " at batch 1");
        runner.generate_once(1);
      }
      for (int batch : grid) runner.attempt(batch, "grid");
      int max_batch = 0, first_failed = 0;
      if (!a.no_search) {
        std::tie(max_batch, first_failed) = search_max_batch(runner, a.max_batch);
      } else {
        for (const auto& [batch, attempt] : runner.done()) {
          if (attempt.ok) max_batch = std::max(max_batch, batch);
          if (!attempt.ok && (first_failed == 0 || batch < first_failed)) first_failed = batch;
        }
      }
      std::optional<double> ipm1, ipm_max;
      double best = 0;
      int best_batch = 0;
      for (const auto& [batch, attempt] : runner.done()) {
        if (!attempt.ok) continue;
        const double ipm = attempt.row["images_per_min"];
        if (batch == 1) ipm1 = ipm;
        if (batch == max_batch) ipm_max = ipm;
        if (ipm > best) {
          best = ipm;
          best_batch = batch;
        }
      }
      for (auto& row : runner.rows()) {
        measurements.push_back(row);
        const bool ok = row["ok"];
        table.add({precision.label, row["kind"], row["batch"].dump(), ok ? "yes" : "NO",
                   ok ? sd_bench::fixed(row["latency_s"], 3) : "-", ok ? sd_bench::fixed(row["images_per_min"], 2) : "-",
                   sd_bench::format_bytes(peak_memory_of(row))});
      }
      Row summary;
      summary["kind"] = "summary";
      summary["device"] = sd_bench::device_name(a.common.device);
      sd_bench::add_build_columns(summary);
      summary["git_revision"] = sd_bench::git_revision();
      summary["model"] = a.common.model;
      summary["precision"] = precision.label == "autocast" ? sd::precision_name(precision.precision) : precision.label;
      summary["autocast"] = precision.autocast;
      summary["steps"] = a.steps;
      summary["height"] = a.common.height;
      summary["width"] = a.common.width;
      summary["searched"] = !a.no_search;
      summary["max_batch"] = max_batch;
      summary["max_batch_limit"] = a.max_batch;
      summary["first_failed_batch"] = first_failed > 0 ? Row(first_failed) : Row(nullptr);
      summary["images_per_min_batch1"] = ipm1 ? Row(*ipm1) : Row(nullptr);
      summary["images_per_min_max_batch"] = ipm_max ? Row(*ipm_max) : Row(nullptr);
      summary["best_batch"] = best_batch > 0 ? Row(best_batch) : Row(nullptr);
      summary["best_images_per_min"] = best_batch > 0 ? Row(best) : Row(nullptr);
      summary["gain_over_batch1"] = ipm1 && ipm_max && *ipm1 > 0 ? Row(*ipm_max / *ipm1) : Row(nullptr);
      summaries.push_back(summary);
      summary_text += precision.label + ": max batch " + std::to_string(max_batch) +
                      (first_failed > 0 ? " (batch " + std::to_string(first_failed) + " failed)"
                                        : " (no failure up to --max-batch " + std::to_string(a.max_batch) + ")") +
                      (summary["gain_over_batch1"].is_null()
                           ? std::string()
                           : ", images/min x" + sd_bench::fixed(summary["gain_over_batch1"], 2) + " over batch 1") +
                      "\n";
    });
  }

  std::cout << "device: " << sd_bench::device_name(a.common.device) << "  " << sd::build_info_line()
            << "  git " << sd_bench::git_revision() << "  steps " << a.steps << "  " << a.common.width << "x"
            << a.common.height << "\n"
            << table.str() << summary_text;
  if (!a.output.json.empty()) {
    std::vector<Row> all = measurements;
    all.insert(all.end(), summaries.begin(), summaries.end());
    sd_bench::append_json_rows(a.output.json, all);
  }
  sd_bench::write_csv_output(a.output, measurements, [](const Row& row) { return row["latency_s"]; });
  return sd_bench::report_failures(failures);
}

}  // namespace

int main(int argc, char** argv) {
  ThroughputArgs a;
  CLI::App app{"bench_throughput - images per minute against batch size, and the largest batch that fits (libsd)"};
  sd_bench::add_common_options(app, a.common);
  sd_bench::add_output_options(app, a.output, true);
  app.add_option("--precision", a.precisions, "comma list of fp32, tf32, fp16, bf16, autocast (default: fp16 on CUDA, bf16 on CPU)");
  app.add_option("--steps", a.steps, "denoising steps per generation")->capture_default_str()->check(CLI::Range(1, 10000));
  // --batch like the other tools; --batch-grid, its first name, still works.
  app.add_option("--batch,--batch-grid", a.grid, "also measure this fixed comma list of batch sizes (the seed's 1,2,4,...)");
  app.add_flag("--no-search", a.no_search, "skip the search for the largest batch");
  app.add_option("--max-batch", a.max_batch, "upper bound of the search")->capture_default_str()->check(CLI::Range(1, 1000000));
  app.add_option("--max-memory", a.max_memory,
                 "a try whose peak memory (CPU: peak RSS; CUDA: peak reserved) exceeds this many bytes counts as failed")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--warmup", a.warmup, "untimed batch-1 generations per precision")->capture_default_str()
      ->check(CLI::Range(0, 1000000));
  app.add_option("--repeats", a.repeats, "timed generations per batch (median)")->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  app.add_flag("--vae-slicing", a.vae_slicing, "decode the images one at a time");
  return sd_bench::run_tool(app, argc, argv, [&] { return run(a); });
}
