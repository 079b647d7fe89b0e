// bench_throughput: images per minute against batch size, and the largest batch that fits.
// The search doubles the batch until a try fails, then bisects between the last success and the
// first failure. A try fails on an out-of-memory error (CUDA: caught, the cache emptied before the
// next try) or, with --max-memory, when the peak memory of the try exceeds it (on the CPU that is
// the only safe way: the kernel's OOM killer cannot be caught). Failures are rows with ok = false.
#include <torch/torch.h>

#include <iostream>
#include <map>

#include "batch_search.h"
#include "config_row.h"
#include "environment.h"
#include "measure.h"
#include "options.h"
#include "rows.h"
#include "sd/build_info.h"
#include "sd/error.h"
#include "stats.h"
#include "table.h"
#include "tool.h"
#include "sd/pipeline.h"

namespace {

using sd_bench::Row;

struct ThroughputArgs {
  sd_bench::CommonOptions common;
  sd_bench::OutputOptions output;
  std::string precisions;  // default: fp16 on CUDA, bf16 on CPU (the seed measured half precision)
  std::string grid;
  int steps = 50, warmup = 1, repeats = 1, max_batch = 64;
  bool no_search = false;
  std::string vae_slicing = "off";  // on, off, or on,off: measure (and search) each
  std::string decoders = "vae";     // --decoder: vae, tiled, tiny, or a comma list: each searched
  int64_t max_memory = 0;
};

struct Attempt {
  bool ok = false;
  Row row;
};

// How one pipeline decodes: VAE slicing on or off, and the decoder (whole, tiled or TAESD).
struct DecodeSetting {
  bool vae_slicing = false;
  sd_bench::DecoderSpec decoder;
  std::string label() const {
    return std::string(vae_slicing ? " sliced" : "") + (decoder.label != "vae" ? " " + decoder.label : "");
  }
};

// Measures batches for one loaded pipeline (one precision and decode setting), each at most once.
class Runner {
 public:
  Runner(const ThroughputArgs& a, const sd_bench::PrecisionSpec& precision, const DecodeSetting& decode,
         sd::Pipeline& pipe, const sd_bench::Progress& progress)
      : a_(a), precision_(precision), decode_(decode), pipe_(pipe), progress_(progress) {}

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
  std::string label() const { return precision_.label + decode_.label(); }

  void warm_up() {
    for (int w = 0; w < a_.warmup; ++w) {
      progress_(label() + ": warmup " + std::to_string(w + 1) + "/" + std::to_string(a_.warmup) + " at batch 1");
      pipe_.generate(a_.common.prompt, sd_bench::make_generate_options(a_.common, a_.steps, 1));
    }
  }

 private:
  // One try: out of memory (the library's error, or LibTorch's) makes it a failed row, as does a
  // peak above --max-memory; any other error ends the tool's run of this precision.
  Row measure(int batch, const std::string& kind, bool* ok) {
    const std::string config = label() + " batch " + std::to_string(batch);
    progress_(config + " (" + kind + ")");
    // With VAE slicing on the pipeline decodes one image at a time (LoadOptions::vae_slicing).
    const auto gen = sd_bench::make_generate_options(a_.common, a_.steps, batch);
    sd_bench::MemoryWindow window(pipe_);
    sd_bench::Measurement m;
    std::string error;
    try {
      m = sd_bench::measure_runs(pipe_, a_.common.prompt, gen, 0, a_.repeats, progress_, config, &window);
    } catch (const std::exception& e) {
      if (!sd_bench::is_out_of_memory(e)) throw;
      error = "out of memory: " + sd_bench::without_backtrace(e.what());
      m = {};  // the next try's window empties the CUDA cache
    }
    m.memory = window.read();
    const auto peak = m.memory.peak();
    if (error.empty() && a_.max_memory > 0 && peak && *peak > a_.max_memory) {
      error = "peak memory " + std::to_string(*peak) + " bytes exceeds --max-memory " + std::to_string(a_.max_memory);
    }
    *ok = error.empty();
    const double median = *ok ? sd_bench::summarize(m.latency).median : 0.0;
    progress_(config + ": " + (*ok ? sd_bench::fixed(median, 3) + " s" : error));

    Row row = sd_bench::configuration_row(a_.common, precision_, pipe_, a_.steps, batch);
    row["kind"] = kind;
    row["vae_slicing"] = decode_.vae_slicing;
    row["decoder"] = decode_.decoder.label;
    row["repeats"] = a_.repeats;
    row["ok"] = *ok;
    row["error"] = error;
    row["latency_s"] = *ok ? Row(median) : Row(nullptr);
    row["images_per_min"] = *ok && median > 0 ? Row(60.0 * batch / median) : Row(nullptr);
    sd_bench::add_memory_columns(row, m.memory, "try");
    sd_bench::add_estimate_columns(row, sd_bench::estimated_stage(pipe_.estimate_memory(gen)), m.memory);
    row["max_memory_bytes"] = a_.max_memory > 0 ? Row(a_.max_memory) : Row(nullptr);
    return row;
  }

  const ThroughputArgs& a_;
  const sd_bench::PrecisionSpec& precision_;
  const DecodeSetting decode_;
  sd::Pipeline& pipe_;
  const sd_bench::Progress& progress_;
  std::map<int, Attempt> done_;
  std::vector<int> order_;
};

// Peak device memory on CUDA, peak RSS on the CPU.
std::optional<int64_t> peak_memory_of(const Row& row) {
  for (const char* key : {"peak_device_reserved_bytes", "peak_rss_bytes"}) {
    if (!row[key].is_null()) return row[key].get<int64_t>();
  }
  return std::nullopt;
}

// The per-setting summary row: the largest batch, and images per minute at batch 1, at the largest
// batch and at the best one.
Row summary_row(const ThroughputArgs& a, const sd_bench::PrecisionSpec& precision, const DecodeSetting& decode,
                const sd::Pipeline& pipe, const Runner& runner, int max_batch, int first_failed) {
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
  Row summary = sd_bench::configuration_row(a.common, precision, pipe, a.steps, max_batch);
  summary["kind"] = "summary";
  summary["vae_slicing"] = decode.vae_slicing;
  summary["decoder"] = decode.decoder.label;
  summary["searched"] = !a.no_search;
  summary["max_batch"] = max_batch;
  summary["max_batch_limit"] = a.max_batch;
  summary["first_failed_batch"] = first_failed > 0 ? Row(first_failed) : Row(nullptr);
  summary["images_per_min_batch1"] = ipm1 ? Row(*ipm1) : Row(nullptr);
  summary["images_per_min_max_batch"] = ipm_max ? Row(*ipm_max) : Row(nullptr);
  summary["best_batch"] = best_batch > 0 ? Row(best_batch) : Row(nullptr);
  summary["best_images_per_min"] = best_batch > 0 ? Row(best) : Row(nullptr);
  summary["gain_over_batch1"] = ipm1 && ipm_max && *ipm1 > 0 ? Row(*ipm_max / *ipm1) : Row(nullptr);
  return summary;
}

int run(ThroughputArgs& a) {
  sd_bench::Progress progress("bench_throughput", a.common.quiet);
  const bool cuda = sd_bench::is_cuda_device(a.common.device);
  if (a.precisions.empty()) a.precisions = cuda ? "fp16" : "bf16";
  const auto precisions = sd_bench::parse_precision_list(a.precisions);
  std::vector<DecodeSetting> decode_settings;
  for (const bool slicing : sd_bench::parse_switch_list(a.vae_slicing, "--vae-slicing")) {
    for (const auto& decoder : sd_bench::parse_decoder_list(a.decoders)) decode_settings.push_back({slicing, decoder});
  }
  const std::vector<int> grid = a.grid.empty() ? std::vector<int>{} : sd_bench::parse_positive_int_list(a.grid, "--batch");
  SD_CHECK(!grid.empty() || !a.no_search, "nothing to do: --no-search without --batch");
  SD_CHECK(a.max_batch >= 1, "--max-batch must be at least 1, got ", a.max_batch);
  SD_CHECK(a.repeats >= 1, "--repeats must be at least 1, got ", a.repeats);

  std::vector<Row> measurements, summaries;
  sd_bench::Table table(
      {"precision", "VAE slicing", "decoder", "kind", "batch", "ok", "latency s", "images/min", "peak mem"});
  std::string summary_text;
  std::vector<std::string> failures;
  for (const auto& precision : precisions) {
    for (const DecodeSetting& decode : decode_settings) {
      const std::string setting = precision.label + decode.label();
      // A precision that fails (autocast on some LibTorch builds, say) does not cost the others.
      sd_bench::guarded(setting, &failures, [&] {
        progress("loading " + a.common.model + " in " + precision.label + " on " + a.common.device +
                 (decode.vae_slicing ? " with VAE slicing" : "") + ", decoder " + decode.decoder.label);
        auto load = sd_bench::make_load_options(a.common, precision);
        load.vae_slicing = decode.vae_slicing;
        sd_bench::apply_decoder(load, decode.decoder, a.common);
        auto pipe = sd::Pipeline::load(a.common.model, load);
        Runner runner(a, precision, decode, pipe, progress);
        runner.warm_up();
        for (int batch : grid) runner.attempt(batch, "grid");
        int max_batch = 0, first_failed = 0;
        if (!a.no_search) {
          const auto found = sd_bench::search_largest_batch(
              [&](int batch) { return runner.attempt(batch, "search").ok; }, a.max_batch);
          max_batch = found.largest_ok;
          first_failed = found.smallest_failed;
        } else {
          for (const auto& [batch, attempt] : runner.done()) {
            if (attempt.ok) max_batch = std::max(max_batch, batch);
            if (!attempt.ok && (first_failed == 0 || batch < first_failed)) first_failed = batch;
          }
        }
        for (auto& row : runner.rows()) {
          measurements.push_back(row);
          const bool ok = row["ok"];
          table.add({precision.label, decode.vae_slicing ? "on" : "off", decode.decoder.label, row["kind"],
                     row["batch"].dump(), ok ? "yes" : "NO",
                     ok ? sd_bench::fixed(row["latency_s"], 3) : "-",
                     ok ? sd_bench::fixed(row["images_per_min"], 2) : "-", sd_bench::format_bytes(peak_memory_of(row))});
        }
        const Row summary = summary_row(a, precision, decode, pipe, runner, max_batch, first_failed);
        summaries.push_back(summary);
        summary_text += setting + ": max batch " + std::to_string(max_batch) +
                        (first_failed > 0 ? " (batch " + std::to_string(first_failed) + " failed)"
                                          : " (no failure up to --max-batch " + std::to_string(a.max_batch) + ")") +
                        (summary["gain_over_batch1"].is_null()
                             ? std::string()
                             : ", images/min x" + sd_bench::fixed(summary["gain_over_batch1"], 2) + " over batch 1") +
                        "\n";
      });
    }
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
  // A bare --vae-slicing means on (it was a flag); --vae-slicing=on,off measures both.
  app.add_flag("--vae-slicing{on}", a.vae_slicing,
               "decode the images one at a time: --vae-slicing (on), or =off, or =on,off for both")
      ->capture_default_str();
  app.add_option("--decoder", a.decoders,
                 "vae (the model's VAE, whole), tiled (in tiles: the largest batch with tiling on), tiny (TAESD from "
                 "--vae-tiny), or a comma list: each measured and searched")
      ->capture_default_str();
  return sd_bench::run_tool(app, argc, argv, [&] { return run(a); });
}
