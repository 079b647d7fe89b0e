// bench_latency: end-to-end and per-stage latency of one generation, per precision x batch x steps.
// Each precision is loaded once; each configuration runs --warmup untimed generations, then
// --repeats timed ones. Stage times come from sd::GenerateResult::timings; the measuring is bench/measure.h's.
#include <cmath>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <optional>

#include "config_row.h"
#include "environment.h"
#include "measure.h"
#include "op_profile.h"
#include "options.h"
#include "rows.h"
#include "sd/build_info.h"
#include "stats.h"
#include "table.h"
#include "tool.h"
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
  std::string cuda_graphs = "on";  // --cuda-graphs: on, off or on,off (LoadOptions::cuda_graphs)
  std::string decoders = "vae";    // --decoder: comma list of vae, tiled, tiny
  // Or "denoise": generations that stop at the latents (no VAE decode); or "decode": the VAE decode
  // alone, of random latents.
  std::string stage = "generate";
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

// The decoder's TFLOP/s, or null: the analytic count is the whole AutoencoderKL decoder's (tiles
// overlap, TAESD is another network), so it describes the "vae" decoder only.
Row decode_tflops(const sd_bench::DecoderSpec& decoder, const sd::ModelFlops& flops, double decode_s) {
  if (decoder.label != "vae" || decode_s <= 0) return nullptr;
  return flops.vae_decode.total() / decode_s / 1e12;
}

// The decode stage alone (--stage decode) as a row: the common columns, then the decoder's.
Row decode_row(const LatencyArgs& a, const sd_bench::PrecisionSpec& precision, const sd_bench::DecoderSpec& decoder,
               const sd::Pipeline& pipe, int batch, const sd_bench::Measurement& m, const sd::ModelFlops& flops) {
  const auto estimate = pipe.estimate_memory(sd_bench::make_generate_options(a.common, 1, batch));
  const auto decode = sd_bench::summarize(m.decode);
  Row row = sd_bench::configuration_row(a.common, precision, pipe, 0, batch);
  row["steps"] = nullptr;
  row["stage"] = "decode";
  row["decoder"] = decoder.label;
  row["decoder_class"] = pipe.info().decoder;
  row["warmup"] = a.warmup;
  row["repeats"] = a.repeats;
  row["load_s"] = pipe.info().load_s;
  row["vae_decode_s"] = sd_bench::stats_json(decode);
  row["images_per_min"] = decode.median > 0 ? 60.0 * batch / decode.median : 0.0;
  sd_bench::add_memory_columns(row, m.memory, "configuration");
  // What the decodes added to the RSS the pipeline already had (its weights, and what the allocator
  // kept of earlier pipelines in this process): the decoder's own peak.
  const auto& mem = m.memory;
  row["rss_at_start_bytes"] = mem.start_rss ? Row(*mem.start_rss) : Row(nullptr);
  row["decode_rss_increase_bytes"] =
      mem.rss_window && mem.peak_rss && mem.start_rss ? Row(*mem.peak_rss - *mem.start_rss) : Row(nullptr);
  sd_bench::add_estimate_columns(row, sd_bench::estimated_stage(estimate, "the VAE decode"), mem);
  row["vae_decode_gflop"] = decoder.label == "vae" ? Row(flops.vae_decode.total() / 1e9) : Row(nullptr);
  row["vae_decode_tflops"] = decode_tflops(decoder, flops, decode.median);
  return row;
}

// Random latents of the configured size: a decoder's compute does not depend on their values.
at::Tensor decode_latents(const LatencyArgs& a, const sd::Pipeline& pipe, int batch) {
  const auto& info = pipe.info();
  const int64_t f = info.vae_scale_factor;
  auto generator = at::detail::createCPUGenerator(a.common.seed);
  return torch::randn({batch, info.latent_channels, a.common.height / f, a.common.width / f}, generator,
                      torch::TensorOptions().dtype(torch::kFloat));
}

// One measured configuration as a row: the common columns, then this tool's.
Row latency_row(const LatencyArgs& a, const sd_bench::PrecisionSpec& precision, bool cuda_graphs,
                const sd_bench::DecoderSpec& decoder, const sd::Pipeline& pipe, int steps, int batch,
                const sd_bench::Measurement& m, const sd::MemoryEstimate& estimate, const sd::ModelFlops& flops,
                const std::map<std::string, double>& peaks) {
  const auto lat = sd_bench::summarize(m.latency);
  const auto per_eval = sd_bench::summarize(m.unet);
  const double tflops = per_eval.median > 0 ? flops.unet.total() / per_eval.median / 1e12 : 0.0;
  const double decode_s = sd_bench::summarize(m.decode).median;
  Row row = sd_bench::configuration_row(a.common, precision, pipe, steps, batch);
  row["mode"] = a.strength ? "img2img" : "txt2img";
  row["decoder"] = decoder.label;
  row["decoder_class"] = pipe.info().decoder;
  row["strength"] = a.strength ? Row(*a.strength) : Row(nullptr);
  row["cuda_graphs"] = cuda_graphs;
  row["cuda_graph"] = m.cuda_graph;
  row["stage"] = a.stage;  // generate, or denoise (no decode)
  row["warmup"] = a.warmup;
  row["repeats"] = a.repeats;
  row["load_s"] = pipe.info().load_s;
  row["latency_s"] = sd_bench::stats_json(lat);
  row["unet_eval_s"] = sd_bench::stats_json(per_eval);
  row["unet_evals"] = m.unet_evals;
  row["text_encoder_s"] = sd_bench::summarize(m.text_encoder).median;
  row["scheduler_s"] = sd_bench::summarize(m.scheduler).median;
  row["vae_decode_s"] = decode_s;
  row["vae_encode_s"] = sd_bench::summarize(m.encode).median;
  row["denoise_s"] = sd_bench::summarize(m.denoise).median;
  row["images_per_min"] = lat.median > 0 ? 60.0 * batch / lat.median : 0.0;
  sd_bench::add_memory_columns(row, m.memory, "configuration");
  sd_bench::add_estimate_columns(row, sd_bench::estimated_stage(estimate), m.memory);
  row["unet_batch"] = flops.unet_batch;
  row["unet_gflop"] = flops.unet.total() / 1e9;
  row["unet_tflops"] = tflops;
  row["vae_decode_tflops"] = decode_tflops(decoder, flops, decode_s);
  const auto peak = peak_for(peaks, precision.label);
  row["peak_tflops"] = peak ? Row(*peak) : Row(nullptr);
  row["fraction_of_peak"] = peak ? Row(tflops / *peak) : Row(nullptr);
  return row;
}

int flops_only(const LatencyArgs& a, const std::vector<int>& batches) {
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

int run(const LatencyArgs& a) {
  sd_bench::Progress progress("bench_latency", a.common.quiet);
  const auto precisions = sd_bench::parse_precision_list(a.precisions);
  const auto batches = sd_bench::parse_positive_int_list(a.batches, "--batch");
  const auto step_counts = sd_bench::parse_positive_int_list(a.steps, "--steps");
  const auto graph_settings = sd_bench::parse_switch_list(a.cuda_graphs, "--cuda-graphs");
  SD_CHECK(a.repeats >= 1, "--repeats must be at least 1, got ", a.repeats);
  SD_CHECK(a.warmup >= 0, "--warmup must be >= 0, got ", a.warmup);
  const auto peaks = parse_peaks(a.peak_tflops);
  if (a.flops_only) return flops_only(a, batches);

  const auto decoders = sd_bench::parse_decoder_list(a.decoders);
  const bool decode_only = a.stage == "decode";
  // What --stage decode cannot do with the other options is the command line's error (exit 2).
  auto refuse_with_decode_stage = [&](bool given, const std::string& what) {
    if (decode_only && given) throw sd_bench::UsageError("--stage decode times the decoder alone: " + what);
  };
  refuse_with_decode_stage(a.strength.has_value(), "no --strength");
  refuse_with_decode_stage(!a.profile.empty(), "--profile profiles whole generations");
  refuse_with_decode_stage(a.output.csv_format == "lambda",
                           "--csv-format lambda has the seed study's columns, of whole generations");
  if (a.stage == "denoise" && (decoders.size() != 1 || decoders[0].label != "vae")) {
    throw sd_bench::UsageError("--stage denoise decodes nothing: no --decoder");
  }
  const bool image_to_image = a.strength.has_value();
  const sd::Image init_image = image_to_image ? bench_init_image(a) : sd::Image{};
  const std::string device = sd_bench::device_name(a.common.device);
  std::vector<Row> rows, profiles;
  sd_bench::Table table({"precision", "graphs", "decoder", "batch", "steps", "UNet evals", "latency s (median)", "p90",
                         "stdev", "UNet s/eval", "TFLOP/s", "text enc s", "VAE enc s", "VAE s", "peak mem"});
  sd_bench::Table decode_table({"precision", "decoder", "batch", "size", "decode s (median)", "p90", "stdev",
                                "images/min", "peak mem", "decode added"});
  std::vector<std::string> failures;
  int threads = at::get_num_threads();  // what the pipelines used, for the header line
  for (const auto& precision : precisions) {
    for (const bool graphs : graph_settings) {
      for (const auto& decoder : decoders) {
        std::string setting = precision.label;
        if (graph_settings.size() > 1) setting += graphs ? " graphs" : " eager";
        if (decoders.size() > 1 || decoder.label != "vae") setting += " " + decoder.label;
        // A precision that fails (autocast on some LibTorch builds, say) does not cost the others.
        sd_bench::guarded(setting, &failures, [&] {
          progress("loading " + a.common.model + " in " + precision.label + " on " + a.common.device);
          sd::LoadOptions load = sd_bench::make_load_options(a.common, precision);
          load.vae_encoder = image_to_image;
          load.cuda_graphs = graphs;
          sd_bench::apply_decoder(load, decoder, a.common);
          // The decode stage is measured as asked, not refused by the estimate of a generation.
          if (decode_only) load.memory_limit = -1;
          auto pipe = sd::Pipeline::load(a.common.model, load);
          threads = pipe.threads();
          for (int batch : batches) {
            const auto flops = sd::model_flops(a.common.model, batch, a.common.guidance > 1.0, a.common.height, a.common.width);
            if (decode_only) {
              const std::string config = setting + " batch " + std::to_string(batch) + " decode";
              const auto m = sd_bench::measure_decodes(pipe, decode_latents(a, pipe, batch), a.warmup, a.repeats,
                                                       progress, config);
              const Row row = decode_row(a, precision, decoder, pipe, batch, m, flops);
              rows.push_back(row);
              const auto d = row["vae_decode_s"];
              decode_table.add({precision.label, decoder.label, std::to_string(batch),
                                std::to_string(a.common.width) + "x" + std::to_string(a.common.height),
                                sd_bench::fixed(d["median"], 3), sd_bench::fixed(d["p90"], 3),
                                sd_bench::fixed(d["stdev"], 3), sd_bench::fixed(row["images_per_min"], 1),
                                sd_bench::format_bytes(m.memory.peak()),
                                row["decode_rss_increase_bytes"].is_null()
                                    ? std::string("-")
                                    : sd_bench::format_bytes(row["decode_rss_increase_bytes"].get<int64_t>())});
              continue;
            }
            for (int steps : step_counts) {
              auto gen = sd_bench::make_generate_options(a.common, steps, batch);
              gen.decode = a.stage != "denoise";
              if (image_to_image) {
                gen.init_image = init_image;
                gen.strength = a.strength;
              }
              const std::string config = setting + " batch " + std::to_string(batch) + " steps " + std::to_string(steps);
              const auto estimate = pipe.estimate_memory(gen);
              const auto m = sd_bench::measure_configuration(pipe, a.common.prompt, gen, a.warmup, a.repeats, progress, config);
              Row row = latency_row(a, precision, graphs, decoder, pipe, steps, batch, m, estimate, flops, peaks);
              rows.push_back(row);
              if (!a.profile.empty()) {
                progress(config + ": profiled run");
                Row profile_config;
                for (const char* key : {"device", "libtorch", "git_revision", "threads", "model", "precision", "autocast",
                                        "channels_last", "prepack_max_pixels", "scheduler", "steps", "batch", "height",
                                        "width", "decoder"}) {
                  profile_config[key] = row[key];
                }
                for (auto& r : profile_rows(pipe, a, gen, profile_config)) profiles.push_back(std::move(r));
              }
              const auto lat = row["latency_s"];
              table.add({precision.label, graphs ? (m.cuda_graph ? "yes" : "asked") : "no", decoder.label,
                         std::to_string(batch), std::to_string(steps), std::to_string(m.unet_evals),
                         sd_bench::fixed(lat["median"], 3), sd_bench::fixed(lat["p90"], 3),
                         sd_bench::fixed(lat["stdev"], 3), sd_bench::fixed(row["unet_eval_s"]["median"], 3),
                         sd_bench::fixed(row["unet_tflops"], 3), sd_bench::fixed(row["text_encoder_s"], 3),
                         sd_bench::fixed(row["vae_encode_s"], 3), sd_bench::fixed(row["vae_decode_s"], 3),
                         sd_bench::format_bytes(m.memory.peak())});
            }
          }
        });
      }
    }
  }

  std::cout << "device: " << device << "  " << sd::build_info_line() << "  git "
            << sd_bench::git_revision() << "  threads " << threads << "  scheduler "
            << a.common.scheduler << "  " << a.common.width << "x" << a.common.height << "\n"
            << (decode_only ? decode_table.str() : table.str());
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
  app.add_option("--cuda-graphs", a.cuda_graphs,
                 "CUDA: capture the UNet as a CUDA graph (on), run it eagerly (off), or measure both (on,off); "
                 "no effect on the CPU")
      ->capture_default_str();
  app.add_option("--decoder", a.decoders,
                 "comma list of decoders to measure, each loaded on its own: vae (the model's), tiled (the same in "
                 "tiles), tiny (TAESD from --vae-tiny)")
      ->capture_default_str();
  app.add_option("--stage", a.stage,
                 "generate: whole generations; denoise: generations that stop at the latents (no VAE decode); "
                 "decode: the decode stage alone, of random latents of the size (no UNet steps: large sizes "
                 "without the UNet's time)")
      ->capture_default_str()
      ->check(CLI::IsMember({"generate", "denoise", "decode"}));
  app.add_flag("--flops-only", a.flops_only, "print the analytic FLOP counts and exit (loads no weights)");
  auto* strength = app.add_option("--strength", a.strength,
                                  "time image-to-image at this strength in [0, 1]: int(steps x strength) UNet steps "
                                  "plus the VAE encode (init image: --init-image, else a synthetic one)");
  strength->check(CLI::Range(0.0, 1.0));
  app.add_option("--init-image", a.init_image, "PNG/JPEG init image for --strength")->needs(strength);
  return sd_bench::run_tool(app, argc, argv, [&] { return run(a); });
}
