#include "golden.h"

#include <cstdlib>

#include <torch/torch.h>
#include <torch/version.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

namespace golden {

// LIBSD_GOLDEN_DIR in the environment overrides the built-in path (the GPU check script runs on a
// machine where the golden data is a copy inside the checkout).
std::filesystem::path dir() {
  const char* env = std::getenv("LIBSD_GOLDEN_DIR");
  return std::filesystem::path(env != nullptr && *env != '\0' ? env : LIBSD_GOLDEN_DIR);
}

const nlohmann::json& manifest() {
  static const nlohmann::json m = [] {
    std::ifstream in(dir() / "manifest.json");
    if (!in) throw std::runtime_error("cannot open " + (dir() / "manifest.json").string());
    return nlohmann::json::parse(in);
  }();
  return m;
}

const nlohmann::json& find_case_in(const nlohmann::json& manifest, const std::string& name) {
  for (const auto& c : manifest["cases"]) {
    if (c["name"] == name) return c;
  }
  throw std::runtime_error("case not in the manifest: " + name);
}

std::vector<nlohmann::json> cases_of_kind_in(const nlohmann::json& manifest, const std::string& kind) {
  std::vector<nlohmann::json> out;
  for (const auto& c : manifest["cases"]) {
    if (c["kind"] == kind) out.push_back(c);
  }
  return out;
}

const nlohmann::json& find_case(const std::string& name) { return find_case_in(manifest(), name); }

std::vector<nlohmann::json> cases_of_kind(const std::string& kind) { return cases_of_kind_in(manifest(), kind); }

bool same_torch_as_reference() {
  static const bool same = [] {
    const std::string reference = manifest()["reference"]["torch"];  // "1.13.0a0"
    const std::string ours = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + ".";
    return reference.rfind(ours, 0) == 0;
  }();
  return same;
}

sd::StateDict load_case(const std::string& name) { return sd::load_safetensors(dir() / (name + ".safetensors")); }

Tolerance tolerance_of(const nlohmann::json& entry, const char* key) {
  Tolerance t;
  if (entry.contains(key)) {
    t.atol = entry[key].value("atol", t.atol);
    t.rtol = entry[key].value("rtol", t.rtol);
  }
  return t;
}

std::string Comparison::describe() const {
  std::ostringstream s;
  s << "max_abs=" << max_abs << " max_ref=" << max_ref << " rel=" << rel << (ok ? " (ok)" : " (FAIL)");
  return s.str();
}

Comparison compare(const at::Tensor& actual, const at::Tensor& expected, Tolerance tol) {
  Comparison c;
  if (actual.sizes() != expected.sizes()) {
    c.max_abs = c.rel = std::numeric_limits<double>::infinity();
    UNSCOPED_INFO("shape mismatch: " << actual.sizes() << " vs " << expected.sizes());
    return c;
  }
  auto a = actual.detach().to(torch::kCPU, torch::kDouble);
  auto e = expected.detach().to(torch::kCPU, torch::kDouble);
  c.max_abs = a.numel() ? (a - e).abs().max().item<double>() : 0.0;
  c.max_ref = e.numel() ? e.abs().max().item<double>() : 0.0;
  c.rel = c.max_ref > 0 ? c.max_abs / c.max_ref : c.max_abs;
  c.ok = std::isfinite(c.max_abs) && (c.max_abs <= tol.atol || c.rel <= tol.rtol);
  std::printf("  compare: %s\n", c.describe().c_str());
  return c;
}

}  // namespace golden
