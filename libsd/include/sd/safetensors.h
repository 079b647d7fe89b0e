#pragma once
// safetensors: read by memory-mapping (tensors are zero-copy views that keep the mapping alive),
// written atomically (temporary file, then rename). Headers are validated before any tensor byte
// is touched: a hostile file gets an sd::Error naming the file and the tensor, never an
// out-of-bounds read.
#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sd/export.h"

namespace sd {

// Ordered by name: what model loaders and `sd inspect` work with.
using StateDict = std::map<std::string, at::Tensor>;
// In a chosen order: what the writer takes.
using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

struct TensorEntry {
  std::string name;
  at::ScalarType dtype = at::kFloat;
  std::vector<int64_t> shape;
  uint64_t data_begin = 0;  // byte offsets relative to the start of the data section
  uint64_t data_end = 0;
};

struct SafetensorsHeader {
  std::vector<TensorEntry> tensors;  // sorted by data_begin
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;  // 8 + header length: where the data section starts in the file
};

// Largest header we accept (the format's reference implementation uses the same bound).
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

// Validates the whole header against a file of `file_size` bytes whose first bytes are `bytes`
// (at least min(file_size, 8 + header length) of them). `origin` names the file in errors.
SD_API SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t available, uint64_t file_size,
                                                  const std::string& origin);

// Name of a dtype in the safetensors spelling ("F32", "BF16", ...); throws for types it cannot hold.
SD_API std::string safetensors_dtype_name(at::ScalarType dtype);

// True for the pickle-based formats (.ckpt, .bin, .pt, .pth, any case): libsd never loads them,
// since unpickling can run arbitrary code. The one list every loader checks.
SD_API bool is_pickle_file(const std::filesystem::path& path);

class SD_API SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;

  const std::filesystem::path& path() const { return path_; }
  const std::vector<TensorEntry>& entries() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  uint64_t file_size() const;
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  const TensorEntry& entry(const std::string& name) const;
  // A CPU tensor viewing the mapped bytes (copied only if the file leaves it misaligned).
  // It stays valid after this object is destroyed. Do not write to it.
  at::Tensor get(const std::string& name) const;
  // Every tensor, as views.
  StateDict all() const;

 private:
  struct SD_LOCAL Mapping;
  std::filesystem::path path_;
  std::shared_ptr<Mapping> mapping_;
  SafetensorsHeader header_;
  std::unordered_map<std::string, size_t> index_;
};

// All tensors of a file, as zero-copy views.
SD_API StateDict load_safetensors(const std::filesystem::path& path);

// Writes CPU copies of `tensors` (any device, made contiguous) to `path` atomically: the data goes
// to a temporary file beside it, which is renamed over `path` only when complete.
SD_API void save_safetensors(const std::filesystem::path& path, const NamedTensors& tensors,
                             const std::map<std::string, std::string>& metadata = {});
SD_API void save_safetensors(const std::filesystem::path& path, const StateDict& tensors,
                             const std::map<std::string, std::string>& metadata = {});

}  // namespace sd
