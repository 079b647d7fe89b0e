#pragma once
// Access to ../shared/golden (diffusers' reference data) and the manifest's tolerance check.
#include <ATen/core/Tensor.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "sd/safetensors.h"

namespace golden {

// ../shared/golden relative to the source tree (CI lays shared/ beside the checkout).
std::filesystem::path dir();
// The parsed manifest.json.
const nlohmann::json& manifest();
// The manifest entry of one case by name ("modules/sd1_tiny/unet_b1_t981"); throws if absent.
const nlohmann::json& find_case(const std::string& name);
// Every case of a kind ("unet", "scheduler", "e2e", ...), in manifest order.
std::vector<nlohmann::json> cases_of_kind(const std::string& kind);
// The same lookups in another manifest of the same shape (tests/data/*/manifest.json).
const nlohmann::json& find_case_in(const nlohmann::json& manifest, const std::string& name);
std::vector<nlohmann::json> cases_of_kind_in(const nlohmann::json& manifest, const std::string& kind);
// The case's tensors: <dir>/<name>.safetensors.
sd::StateDict load_case(const std::string& name);

struct Tolerance {
  double atol = 1e-4;
  double rtol = 1e-4;
};
Tolerance tolerance_of(const nlohmann::json& entry, const char* key = "tolerance");

struct Comparison {
  double max_abs = 0;   // max |actual - expected|
  double max_ref = 0;   // max |expected|
  double rel = 0;       // max_abs / max_ref
  bool ok = false;      // max_abs <= atol || rel <= rtol (the manifest's rule)
  std::string describe() const;
};
// Compares in float64 after checking shapes; `what` names the tensor in the description.
Comparison compare(const at::Tensor& actual, const at::Tensor& expected, Tolerance tol);

// True when this LibTorch has the major.minor of the torch that recorded the golden data
// (manifest reference.torch). Only then can values that libsd computes with torch's own ops
// (linspace, cumprod) be bit-identical: torch 2.x rounds some of them differently from 1.13, and
// diffusers on 2.x gets 2.x's values just as libsd does.
bool same_torch_as_reference();

}  // namespace golden

// CHECK that `actual` equals `expected` bit for bit where the golden data comes from this torch
// version, and within `tol` otherwise.
#define CHECK_EXACT_ON_REFERENCE_TORCH(actual, expected, tol)                              \
  do {                                                                                   \
    if (::golden::same_torch_as_reference()) {                                           \
      CHECK(torch::equal((actual), (expected)));                                         \
    } else {                                                                             \
      INFO("not the golden data's torch version: compared within the tolerance");       \
      CHECK_CLOSE_TO_GOLDEN(actual, expected, tol);                                      \
    }                                                                                    \
  } while (0)

// CHECK that `actual` matches `expected` within `tol`, printing the max error either way.
#define CHECK_CLOSE_TO_GOLDEN(actual, expected, tol)                                    \
  do {                                                                                   \
    auto golden_cmp_ = ::golden::compare((actual), (expected), (tol));                  \
    INFO(#actual << " vs " << #expected << ": " << golden_cmp_.describe());             \
    CHECK(golden_cmp_.ok);                                                               \
  } while (0)
