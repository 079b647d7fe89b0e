// libFuzzer target for the LoRA reader (lora/lora_file.cpp, lora/lora_keys.cpp): a fuzz input
// describes a small safetensors file — its tensor names, dtypes, shapes, values and metadata — which
// the harness writes for real and hands to read_lora_file. The safetensors parser has its own
// fuzzer; this one reaches what lies behind it: format detection, key parsing, grouping into
// (down, up, alpha) modules, the rank/shape/finiteness checks and the one-line error.
//
// Input, one entry per line until a line "--"; the bytes after it are the tensor values, cycled:
//   NAME|DTYPE|D0,D1,...     a tensor (DTYPE: f32 f16 bf16 f64 i32 i64 u8; no dims: a scalar)
//   @KEY=VALUE               a metadata entry (e.g. @lora_alpha=4)
// A line of another form is ignored. At most 32 tensors of at most 4096 elements, dims <= 64.
//
// read_lora_file must either return modules that keep lora_file.h's promises or throw sd::Error;
// anything else (another exception, a sanitizer report, an abort() from a broken promise) is a bug.
#include <unistd.h>

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "lora/lora_file.h"
#include "sd/error.h"
#include "sd/safetensors.h"

namespace {

constexpr size_t kMaxTensors = 32;
constexpr int64_t kMaxElements = 4096;
constexpr int64_t kMaxDim = 64;

struct Spec {
  sd::NamedTensors tensors;
  std::map<std::string, std::string> metadata;
};

bool parse_dtype(std::string_view s, at::ScalarType* out) {
  static const std::pair<const char*, at::ScalarType> kTypes[] = {
      {"f32", at::kFloat}, {"f16", at::kHalf}, {"bf16", at::kBFloat16}, {"f64", at::kDouble},
      {"i32", at::kInt},   {"i64", at::kLong}, {"u8", at::kByte}};
  for (const auto& [name, type] : kTypes) {
    if (s == name) {
      *out = type;
      return true;
    }
  }
  return false;
}

// "4,8" -> {4, 8}; false for anything else, a dimension over kMaxDim, or too many elements.
bool parse_shape(std::string_view s, std::vector<int64_t>* shape) {
  int64_t numel = 1;
  while (!s.empty()) {
    const size_t comma = s.find(',');
    const std::string_view item = s.substr(0, comma);
    if (item.empty() || item.size() > 2) return false;
    int64_t d = 0;
    for (char c : item) {
      if (c < '0' || c > '9') return false;
      d = d * 10 + (c - '0');
    }
    if (d > kMaxDim || shape->size() >= 4) return false;
    shape->push_back(d);
    numel *= d;
    if (numel > kMaxElements) return false;
    s = comma == std::string_view::npos ? std::string_view() : s.substr(comma + 1);
  }
  return true;
}

// The tensor's bytes: the value bytes cycled (zeros where there are none), so that the fuzzer
// steers NaNs, infinities and signs as well as the layout.
at::Tensor make_tensor(at::ScalarType dtype, const std::vector<int64_t>& shape, std::string_view values,
                       size_t* cursor) {
  at::Tensor t = torch::zeros(shape, torch::TensorOptions().dtype(dtype));
  auto* bytes = static_cast<uint8_t*>(t.data_ptr());
  const size_t n = t.numel() * t.element_size();
  for (size_t i = 0; i < n && !values.empty(); ++i) bytes[i] = static_cast<uint8_t>(values[(*cursor)++ % values.size()]);
  return t;
}

Spec parse_spec(std::string_view input) {
  Spec spec;
  const size_t split = input.find("\n--\n");
  const std::string_view lines = input.substr(0, split);
  const std::string_view values = split == std::string_view::npos ? std::string_view() : input.substr(split + 4);
  size_t cursor = 0, start = 0;
  while (start <= lines.size()) {
    const size_t end = std::min(lines.find('\n', start), lines.size());
    const std::string_view line = lines.substr(start, end - start);
    start = end + 1;
    if (line.size() > 1 && line[0] == '@') {
      const size_t eq = line.find('=');
      if (eq != std::string_view::npos) spec.metadata[std::string(line.substr(1, eq - 1))] = std::string(line.substr(eq + 1));
      continue;
    }
    const size_t bar1 = line.find('|');
    const size_t bar2 = bar1 == std::string_view::npos ? bar1 : line.find('|', bar1 + 1);
    if (bar2 == std::string_view::npos || bar1 == 0 || spec.tensors.size() >= kMaxTensors) continue;
    at::ScalarType dtype;
    std::vector<int64_t> shape;
    if (!parse_dtype(line.substr(bar1 + 1, bar2 - bar1 - 1), &dtype) || !parse_shape(line.substr(bar2 + 1), &shape)) continue;
    const std::string name(line.substr(0, bar1));
    bool duplicate = false;  // a safetensors header cannot name a tensor twice
    for (const auto& [have, tensor] : spec.tensors) duplicate = duplicate || have == name;
    if (!duplicate) spec.tensors.emplace_back(name, make_tensor(dtype, shape, values, &cursor));
  }
  return spec;
}

bool is_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kHalf || t == at::kBFloat16 || t == at::kDouble;
}

// lora_file.h's promises for a file that was read.
void check_promises(const sd::lora::LoraFile& file, size_t tensor_count) {
  if (file.modules.empty() && file.unknown.empty()) std::abort();
  if (file.modules.size() + file.unknown.size() > tensor_count) std::abort();
  for (const auto& m : file.modules) {
    if (m.name.empty() || m.key.empty()) std::abort();
    if (!is_float(m.down.scalar_type()) || !is_float(m.up.scalar_type())) std::abort();
    if ((m.down.dim() != 2 && m.down.dim() != 4) || (m.up.dim() != 2 && m.up.dim() != 4)) std::abort();
    if (m.rank < 1 || m.down.size(0) != m.rank || m.up.size(1) != m.rank) std::abort();
    if (m.up.dim() == 4 && (m.up.size(2) != 1 || m.up.size(3) != 1)) std::abort();
    const int64_t fan_in = m.down.numel() / m.rank;
    if (m.rank > std::min<int64_t>(m.up.size(0), fan_in)) std::abort();
    if (!std::isfinite(m.alpha)) std::abort();
    if (!torch::isfinite(m.down).all().item<bool>() || !torch::isfinite(m.up).all().item<bool>()) std::abort();
  }
}

// One file per process, written for each input and removed after it: libFuzzer ends with _Exit,
// so nothing registered with atexit would run.
const std::filesystem::path& scratch_file() {
  static const std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("libsd-fuzz-lora-" + std::to_string(getpid()) + ".safetensors");
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Spec spec = parse_spec(std::string_view(reinterpret_cast<const char*>(data), size));
  if (spec.tensors.empty()) return 0;  // safetensors files with no tensors are the parser fuzzer's
  try {
    // A name that is not UTF-8 cannot be in a safetensors header (JSON): the writer refuses it.
    sd::save_safetensors(scratch_file(), spec.tensors, spec.metadata);
  } catch (const sd::Error&) {
    return 0;
  }
  try {
    check_promises(sd::lora::read_lora_file(scratch_file()), spec.tensors.size());
  } catch (const sd::Error&) {
  }
  std::filesystem::remove(scratch_file());  // the read's tensor views are gone with its LoraFile
  return 0;
}
