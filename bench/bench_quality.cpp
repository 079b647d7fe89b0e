// bench_quality: how far two precisions drift apart. Same prompt, same seed, same initial latents
// through precision A and precision B, for a list of step counts; for one run (--history-steps)
// also the latents after every scheduler step, decoded. Compares the 8-bit images (PSNR, SSIM,
// max/mean absolute difference) and the latents, and writes side-by-side PNGs (A | B | amplified
// difference), a contact sheet and metrics.csv / metrics.json into --output-dir.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <set>

#include "environment.h"
#include "options.h"
#include "rows.h"
#include "table.h"
#include "tool.h"
#include "sd/build_info.h"
#include "image_metrics.h"
#include "sd/error.h"
#include "sd/pipeline.h"
#include "sd/safetensors.h"

namespace {

using sd_bench::Row;
namespace fs = std::filesystem;

struct QualityArgs {
  sd_bench::CommonOptions common;
  std::string pair;  // default: fp32,fp16 on CUDA, fp32,bf16 on CPU
  std::string steps = "10,15,20,25,30,35,40,45,50,55,60,65,70,75,80,85,90,95";
  int history_steps = -1;  // -1: the largest of --steps; 0: none
  double amplify = 10;
  int contact_rows = 10;
  std::string output_dir = "bench_quality";
};

// What one precision produced.
struct RunOutput {
  std::map<int, sd::Image> final_images;       // by step count
  std::map<int, at::Tensor> final_latents;
  std::vector<sd::Image> history_images;       // after each scheduler step of the history run
  std::vector<at::Tensor> history_latents;
  std::vector<double> history_timesteps;
};

struct LatentMetrics {
  double psnr = 0, max_abs = 0, mean_abs = 0, rel_l2 = 0;
};

// PSNR of latents against A's own dynamic range (max - min): latents are not bounded like pixels.
LatentMetrics compare_latents(const at::Tensor& a64, const at::Tensor& b64) {
  const auto a = a64.to(torch::kDouble), b = b64.to(torch::kDouble);
  const auto diff = (a - b).abs();
  LatentMetrics m;
  m.max_abs = diff.max().item<double>();
  m.mean_abs = diff.mean().item<double>();
  const double norm = a.norm().item<double>();
  m.rel_l2 = norm > 0 ? (a - b).norm().item<double>() / norm : 0.0;
  const double range = (a.max() - a.min()).item<double>();
  const double mse = diff.pow(2).mean().item<double>();
  m.psnr = mse == 0 ? std::numeric_limits<double>::infinity() : 10.0 * std::log10(range * range / mse);
  return m;
}

Row finite_or_null(double value) { return std::isfinite(value) ? Row(value) : Row(nullptr); }

RunOutput run_precision(const QualityArgs& a, const sd_bench::PrecisionSpec& precision, const std::vector<int>& step_counts,
                        int history, at::Tensor* init_latents, const sd_bench::Progress& progress) {
  progress("loading " + a.common.model + " in " + precision.label + " on " + a.common.device);
  auto pipe = sd::Pipeline::load(a.common.model, sd_bench::make_load_options(a.common, precision));
  const auto& info = pipe.info();
  if (!init_latents->defined()) {
    // torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed)): the latents both
    // precisions start from (saved, so a run can be repeated elsewhere).
    auto generator = at::detail::createCPUGenerator(a.common.seed);
    *init_latents = torch::randn({1, info.latent_channels, a.common.height / info.vae_scale_factor,
                                  a.common.width / info.vae_scale_factor},
                                 generator, torch::TensorOptions().dtype(torch::kFloat));
  }
  std::set<int> runs(step_counts.begin(), step_counts.end());
  if (history > 0) runs.insert(history);
  RunOutput out;
  for (int steps : runs) {
    auto gen = sd_bench::make_generate_options(a.common, steps, 1);
    gen.initial_latents = *init_latents;
    gen.keep_step_latents = steps == history;
    progress(precision.label + ": " + std::to_string(steps) + " steps");
    auto result = pipe.generate(a.common.prompt, gen);
    if (std::count(step_counts.begin(), step_counts.end(), steps) > 0) {
      out.final_images[steps] = result.images.at(0);
      out.final_latents[steps] = result.latents.to(torch::kCPU);
    }
    if (steps == history) {
      for (size_t i = 0; i < result.step_latents.size(); ++i) {
        progress(precision.label + ": decoding step " + std::to_string(i + 1) + "/" +
                 std::to_string(result.step_latents.size()));
        out.history_latents.push_back(result.step_latents[i]);
        out.history_images.push_back(sd::to_images(pipe.decode(result.step_latents[i]))[0]);
        out.history_timesteps.push_back(result.timesteps[static_cast<int64_t>(i)].item<double>());
      }
    }
  }
  return out;
}

std::string numbered(const char* prefix, int n) {
  char name[64];
  std::snprintf(name, sizeof(name), "%s%03d.png", prefix, n);
  return name;
}

int run(QualityArgs& a) {
  sd_bench::Progress progress("bench_quality", a.common.quiet);
  const bool cuda = sd_bench::is_cuda_device(a.common.device);
  if (a.pair.empty()) a.pair = cuda ? "fp32,fp16" : "fp32,bf16";
  const auto pair = sd_bench::parse_precision_list(a.pair);
  SD_CHECK(pair.size() == 2, "--pair: expected two precisions A,B, got '", a.pair, "'");
  std::vector<int> step_counts;
  for (int steps : sd_bench::parse_positive_int_list(a.steps, "--steps")) {
    if (std::count(step_counts.begin(), step_counts.end(), steps) == 0) step_counts.push_back(steps);
  }
  const int history = a.history_steps < 0 ? *std::max_element(step_counts.begin(), step_counts.end()) : a.history_steps;
  SD_CHECK(a.amplify > 0, "--amplify must be positive, got ", a.amplify);

  const fs::path out_dir = a.output_dir;
  fs::create_directories(out_dir / "steps");
  at::Tensor init_latents;
  const RunOutput ra = run_precision(a, pair[0], step_counts, history, &init_latents, progress);
  const RunOutput rb = run_precision(a, pair[1], step_counts, history, &init_latents, progress);
  sd::save_safetensors(out_dir / "init_latents.safetensors", sd::NamedTensors{{"latents", init_latents}},
                       {{"seed", std::to_string(a.common.seed)}, {"prompt", a.common.prompt}});

  auto context = [&](Row& row) {
    row["precision_a"] = pair[0].label;
    row["precision_b"] = pair[1].label;
    row["device"] = sd_bench::device_name(a.common.device);
    sd_bench::add_build_columns(row);
    row["git_revision"] = sd_bench::git_revision();
    row["model"] = a.common.model;
    row["scheduler"] = a.common.scheduler;
    row["height"] = a.common.height;
    row["width"] = a.common.width;
    row["guidance"] = a.common.guidance;
    row["seed"] = a.common.seed;
  };
  auto metrics_row = [&](const char* kind, int steps, int step, std::optional<double> timestep, const sd::Image& ia,
                         const sd::Image& ib, const at::Tensor& la, const at::Tensor& lb, const std::string& image) {
    const auto im = sd_bench::compare_images(ia, ib);
    const auto lm = compare_latents(la, lb);
    Row row;
    row["run"] = kind;
    row["steps"] = steps;
    row["step"] = step;
    row["timestep"] = timestep ? Row(*timestep) : Row(nullptr);
    row["psnr"] = finite_or_null(im.psnr);
    row["ssim"] = im.ssim;
    row["max_abs"] = im.max_abs;
    row["mean_abs"] = im.mean_abs;
    row["latent_psnr"] = finite_or_null(lm.psnr);
    row["latent_max_abs"] = lm.max_abs;
    row["latent_mean_abs"] = lm.mean_abs;
    row["latent_rel_l2"] = lm.rel_l2;
    row["image"] = image;
    context(row);
    return row;
  };

  std::vector<Row> rows;
  sd_bench::Table table({"run", "steps", "step", "PSNR dB", "SSIM", "max abs", "mean abs", "latent rel L2"});
  auto add_to_table = [&](const Row& r) {
    table.add({r["run"], r["steps"].dump(), r["step"].dump(), r["psnr"].is_null() ? "inf" : sd_bench::fixed(r["psnr"], 2),
               sd_bench::fixed(r["ssim"], 4), sd_bench::fixed(r["max_abs"], 0), sd_bench::fixed(r["mean_abs"], 3),
               sd_bench::fixed(r["latent_rel_l2"], 5)});
  };
  for (int steps : step_counts) {
    const std::string name = numbered("final_steps_", steps);
    const auto& ia = ra.final_images.at(steps);
    const auto& ib = rb.final_images.at(steps);
    sd::write_png(out_dir / name, sd_bench::hconcat({ia, ib, sd_bench::difference_image(ia, ib, a.amplify)}, 4));
    rows.push_back(metrics_row("final", steps, steps, std::nullopt, ia, ib, ra.final_latents.at(steps),
                               rb.final_latents.at(steps), name));
    add_to_table(rows.back());
  }
  std::vector<sd::Image> sheet;
  const size_t n = std::min(ra.history_images.size(), rb.history_images.size());
  // Contact sheet: evenly spaced steps, the last one always included, each triptych scaled to <= 768 px wide.
  std::set<size_t> on_sheet;
  const size_t rows_wanted = std::max(1, a.contact_rows);
  for (size_t k = 0; k < rows_wanted && n > 0; ++k) {
    on_sheet.insert(rows_wanted == 1 ? n - 1 : (n - 1) * k / (rows_wanted - 1));
  }
  for (size_t i = 0; i < n; ++i) {
    const std::string name = "steps/" + numbered("step_", static_cast<int>(i + 1));
    const auto& ia = ra.history_images[i];
    const auto& ib = rb.history_images[i];
    const auto triptych = sd_bench::hconcat({ia, ib, sd_bench::difference_image(ia, ib, a.amplify)}, 4);
    sd::write_png(out_dir / name, triptych);
    rows.push_back(metrics_row("history", history, static_cast<int>(i + 1), ra.history_timesteps[i], ia, ib,
                               ra.history_latents[i], rb.history_latents[i], name));
    add_to_table(rows.back());
    if (on_sheet.count(i) > 0) sheet.push_back(sd_bench::downscale(triptych, std::max(1, (triptych.width + 767) / 768)));
  }
  if (!sheet.empty()) sd::write_png(out_dir / "contact_sheet.png", sd_bench::vconcat(sheet, 4));

  sd_bench::write_csv_rows(out_dir / "metrics.csv", rows);
  sd_bench::write_json_rows(out_dir / "metrics.json", rows);
  std::cout << pair[0].label << " vs " << pair[1].label << " on " << sd_bench::device_name(a.common.device) << "  "
            << sd::build_info_line() << "  git " << sd_bench::git_revision() << "  scheduler " << a.common.scheduler
            << "  " << a.common.width << "x" << a.common.height << "  seed " << a.common.seed << "\n"
            << table.str() << "images and metrics in " << out_dir.string() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  QualityArgs a;
  CLI::App app{"bench_quality - image and latent differences between two precisions from the same latents (libsd)"};
  sd_bench::add_common_options(app, a.common);
  app.add_option("--pair", a.pair, "the two precisions A,B (default: fp32,fp16 on CUDA, fp32,bf16 on CPU)");
  app.add_option("--steps", a.steps, "comma list of step counts for the final-image comparison")->capture_default_str();
  app.add_option("--history-steps", a.history_steps,
                 "step count of the run whose every step is decoded and compared (default: the largest --steps; 0: none)");
  app.add_option("--amplify", a.amplify, "factor on |A - B| in the difference images")->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--contact-rows", a.contact_rows, "steps shown in contact_sheet.png")->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--output-dir", a.output_dir, "images, metrics.csv and metrics.json go here")->capture_default_str();
  return sd_bench::run_tool(app, argc, argv, [&] { return run(a); });
}
