#pragma once
// The benchmark tools' command-line options and what they become: sd::LoadOptions and
// sd::GenerateOptions, precision specs, comma lists, the CUDA device index.
#include <CLI/CLI.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "sd/pipeline.h"
#include "sd/precision.h"

namespace sd_bench {

// A bad argument the tool finds after CLI11's parsing (a comma list, a precision name): exit code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Options every tool takes.
struct CommonOptions {
  std::string model = "random:sd-v1-5";
  std::string device = "cpu";
  int height = 512, width = 512;
  std::string prompt = "a photo of an astronaut riding a horse on mars";
  std::string negative_prompt;
  uint64_t seed = 0;
  std::string scheduler = "pndm";
  double guidance = 7.5;
  int threads = 0;
  bool no_channels_last = false;
  int64_t prepack_max_pixels = -1;
  int64_t attention_slice = 0;
  std::string vae_tiny = "random:taesd";  // the tiny autoencoder of --decoder tiny
  bool quiet = false;
};
void add_common_options(CLI::App& app, CommonOptions& options);

// Where the rows go besides stdout.
struct OutputOptions {
  std::string csv, json;
  std::string csv_format = "full";  // "full" or "lambda" (the seed study's columns)
};
void add_output_options(CLI::App& app, OutputOptions& options, bool with_lambda_format);

// One precision to measure: "fp32", "tf32", "fp16", "bf16", or "autocast" (fp32 weights with
// LoadOptions::autocast: fp16 compute on CUDA, bf16 on CPU).
struct PrecisionSpec {
  std::string label;
  sd::Precision precision = sd::Precision::kFP32;
  bool autocast = false;
};
PrecisionSpec parse_precision(const std::string& name);
std::vector<PrecisionSpec> parse_precision_list(const std::string& text);

// "1,2,4" -> {1, 2, 4}; every entry a positive integer, else a UsageError naming `flag`.
std::vector<int> parse_positive_int_list(const std::string& text, const std::string& flag);
// "on,off" -> {true, false}; also yes/no, true/false, 1/0; else a UsageError naming `flag`.
std::vector<bool> parse_switch_list(const std::string& text, const std::string& flag);
std::vector<std::string> split_list(const std::string& text);

// One decoder to measure (--decoder): "vae" (the model's AutoencoderKL, whole), "tiled" (the same in
// tiles: LoadOptions::vae_tiling on) or "tiny" (TAESD from --vae-tiny: LoadOptions::vae_tiny).
struct DecoderSpec {
  std::string label = "vae";
  sd::VaeTiling tiling = sd::VaeTiling::kOff;
  bool tiny = false;
};
DecoderSpec parse_decoder(const std::string& name);
std::vector<DecoderSpec> parse_decoder_list(const std::string& text);
void apply_decoder(sd::LoadOptions& load, const DecoderSpec& decoder, const CommonOptions& options);

sd::LoadOptions make_load_options(const CommonOptions& options, const PrecisionSpec& precision);
sd::GenerateOptions make_generate_options(const CommonOptions& options, int steps, int batch);

bool is_cuda_device(const std::string& device);
// "cuda:1" -> 1, "cuda" -> 0 (c10::Device's parsing; sd::Error for what it refuses).
int cuda_index(const std::string& device);

}  // namespace sd_bench
