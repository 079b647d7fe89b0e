#include "options.h"

#include <c10/core/Device.h>

#include <limits>
#include <sstream>

#include "../tools/cli_checks.h"
#include "sd/error.h"
#include "sd/scheduler.h"

namespace sd_bench {

void add_common_options(CLI::App& app, CommonOptions& o) {
  app.add_option("--model", o.model, "diffusers folder, single-file .safetensors, or random:sd-v1-5")->capture_default_str();
  app.add_option("--device", o.device, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--height", o.height, "image height (multiple of 8)")->capture_default_str()
      ->check(sd_cli_checks::positive_multiple_of_8());
  app.add_option("--width", o.width, "image width (multiple of 8)")->capture_default_str()
      ->check(sd_cli_checks::positive_multiple_of_8());
  app.add_option("--prompt", o.prompt, "the prompt")->capture_default_str();
  app.add_option("--negative-prompt", o.negative_prompt, "negative prompt (with guidance > 1)");
  app.add_option("--seed", o.seed, "seed of the initial latents")->capture_default_str()->transform(sd_cli_checks::seed());
  app.add_option("--scheduler", o.scheduler, "pndm, ddim, euler, euler-a, dpm++2m, dpm++2m-karras, lms")->capture_default_str();
  app.add_option("--guidance", o.guidance, "classifier-free guidance scale (<= 1: none)")->capture_default_str()
      ->check(sd_cli_checks::finite_non_negative());
  app.add_option("--threads", o.threads, "CPU threads (0: all cores)")->capture_default_str()->check(CLI::Range(0, 4096));
  app.add_flag("--no-channels-last", o.no_channels_last, "keep the convolutions in contiguous (NCHW) layout");
  app.add_option("--prepack-max-pixels", o.prepack_max_pixels,
                 "CPU: convolutions on inputs of at most this many pixels (batch x height x width) keep a weight "
                 "copy reordered for oneDNN; -1 = libsd's choice per precision, 0 = off (less memory)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{-1}, std::numeric_limits<int64_t>::max()));
  app.add_option("--attention-slice", o.attention_slice, "attention in query slices of this many rows (0: whole)")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--vae-tiny", o.vae_tiny,
                 "the tiny autoencoder of --decoder tiny: a diffusers AutoencoderTiny folder, "
                 "taesd_decoder.safetensors, or random:taesd (timing only)")
      ->capture_default_str();
  app.add_flag("--quiet", o.quiet, "no progress lines on stderr");
}

void add_output_options(CLI::App& app, OutputOptions& o, bool with_lambda_format) {
  app.add_option("--csv", o.csv, "append rows to this CSV file (header written once, checked after)");
  app.add_option("--json", o.json, "append row objects to the JSON array in this file");
  if (with_lambda_format) {
    app.add_option("--csv-format", o.csv_format,
                   "full: every field; lambda: the seed study's columns "
                   "device,precision,autocast,xformers,runtime,n_samples,latency,memory")
        ->capture_default_str()
        ->check(CLI::IsMember({"full", "lambda"}));
  }
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(text);
  while (std::getline(in, item, ',')) {
    const auto begin = item.find_first_not_of(" \t");
    const auto end = item.find_last_not_of(" \t");
    if (begin != std::string::npos) out.push_back(item.substr(begin, end - begin + 1));
  }
  return out;
}

std::vector<int> parse_positive_int_list(const std::string& text, const std::string& flag) {
  std::vector<int> out;
  for (const auto& item : split_list(text)) {
    size_t used = 0;
    long value = 0;
    try {
      value = std::stol(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (!(used == item.size() && value >= 1 && value <= 1000000)) {
      throw UsageError(flag + ": expected a comma list of positive integers (at most 1000000), got '" + item +
                       "' in '" + text + "'");
    }
    out.push_back(static_cast<int>(value));
  }
  if (out.empty()) throw UsageError(flag + ": expected at least one value, got '" + text + "'");
  return out;
}

std::vector<bool> parse_switch_list(const std::string& text, const std::string& flag) {
  std::vector<bool> out;
  for (const auto& item : split_list(text)) {
    if (item == "on" || item == "yes" || item == "true" || item == "1") {
      out.push_back(true);
    } else if (item == "off" || item == "no" || item == "false" || item == "0") {
      out.push_back(false);
    } else {
      throw UsageError(flag + ": expected a comma list of on/off, got '" + item + "' in '" + text + "'");
    }
  }
  if (out.empty()) throw UsageError(flag + ": expected on, off or on,off, got '" + text + "'");
  return out;
}

PrecisionSpec parse_precision(const std::string& name) {
  PrecisionSpec spec;
  spec.label = name;
  if (name == "autocast") {
    spec.precision = sd::Precision::kFP32;
    spec.autocast = true;
    return spec;
  }
  try {
    spec.precision = sd::precision_from_name(name);
  } catch (const sd::Error&) {
    throw UsageError("--precision: unknown precision '" + name + "' (expected fp32, tf32, fp16, bf16 or autocast)");
  }
  return spec;
}

std::vector<PrecisionSpec> parse_precision_list(const std::string& text) {
  std::vector<PrecisionSpec> out;
  for (const auto& name : split_list(text)) out.push_back(parse_precision(name));
  if (out.empty()) throw UsageError("--precision: expected at least one precision, got '" + text + "'");
  return out;
}

DecoderSpec parse_decoder(const std::string& name) {
  DecoderSpec spec;
  spec.label = name;
  if (name == "tiled") {
    spec.tiling = sd::VaeTiling::kOn;
  } else if (name == "tiny") {
    spec.tiny = true;
  } else if (name != "vae") {
    throw UsageError("--decoder: unknown decoder '" + name + "' (expected vae, tiled or tiny)");
  }
  return spec;
}

std::vector<DecoderSpec> parse_decoder_list(const std::string& text) {
  std::vector<DecoderSpec> out;
  for (const auto& name : split_list(text)) out.push_back(parse_decoder(name));
  if (out.empty()) throw UsageError("--decoder: expected at least one of vae, tiled, tiny, got '" + text + "'");
  return out;
}

void apply_decoder(sd::LoadOptions& load, const DecoderSpec& decoder, const CommonOptions& options) {
  load.vae_tiling = decoder.tiling;
  if (decoder.tiny) load.vae_tiny = options.vae_tiny;
}

bool is_cuda_device(const std::string& device) { return device.rfind("cuda", 0) == 0; }

int cuda_index(const std::string& device) {
  try {
    const c10::Device d(device);
    return d.has_index() ? d.index() : 0;
  } catch (const std::exception&) {
    SD_FAIL("unknown device '", device, "' (expected cpu, cuda or cuda:N)");
  }
}

sd::LoadOptions make_load_options(const CommonOptions& o, const PrecisionSpec& precision) {
  sd::LoadOptions load;
  load.device = o.device;
  load.precision = precision.precision;
  load.autocast = precision.autocast;
  load.threads = o.threads;
  load.channels_last = !o.no_channels_last;
  load.prepack_max_pixels = o.prepack_max_pixels;
  load.attention_slice = o.attention_slice;
  return load;
}

sd::GenerateOptions make_generate_options(const CommonOptions& o, int steps, int batch) {
  sd::GenerateOptions gen;
  gen.negative_prompt = o.negative_prompt;
  gen.width = o.width;
  gen.height = o.height;
  gen.steps = steps;
  gen.batch = batch;
  gen.guidance_scale = o.guidance;
  gen.seed = o.seed;
  gen.scheduler = sd::scheduler_kind_from_name(o.scheduler);
  return gen;
}

}  // namespace sd_bench
