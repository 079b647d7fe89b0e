// safetensors reader and writer. Format: u64 little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the data.
// The reader enforces what the format's reference implementation enforces: the byte ranges tile
// the data section exactly (no overlap, no gap, nothing past the end) and match shape x dtype.
#include "sd/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <torch/torch.h>

#include "sd/atomic_file.h"
#include "sd/error.h"

namespace sd {
namespace {

using json = nlohmann::json;

struct DTypeName {
  const char* name;
  at::ScalarType type;
};
constexpr DTypeName kDTypes[] = {
    {"F64", at::kDouble}, {"F32", at::kFloat}, {"F16", at::kHalf}, {"BF16", at::kBFloat16},
    {"I64", at::kLong},   {"I32", at::kInt},   {"I16", at::kShort}, {"I8", at::kChar},
    {"U8", at::kByte},    {"BOOL", at::kBool},
};

bool dtype_from_name(const std::string& name, at::ScalarType* out) {
  for (const auto& d : kDTypes) {
    if (name == d.name) {
      *out = d.type;
      return true;
    }
  }
  return false;
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

uint64_t json_u64(const json& value, const std::string& origin, const std::string& tensor, const char* field) {
  SD_CHECK(value.is_number_unsigned() || (value.is_number_integer() && value.get<int64_t>() >= 0), origin,
           ": tensor '", tensor, "': ", field, " must hold non-negative integers, got ", value.dump());
  return value.get<uint64_t>();
}

}  // namespace

std::string safetensors_dtype_name(at::ScalarType dtype) {
  for (const auto& d : kDTypes) {
    if (d.type == dtype) return d.name;
  }
  SD_FAIL("safetensors cannot store dtype ", c10::toString(dtype));
}

SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t available, uint64_t file_size,
                                           const std::string& origin) {
  SD_CHECK(file_size >= 8 && available >= 8, origin, ": not a safetensors file: ", file_size,
           " bytes, shorter than the 8-byte header length");
  const uint64_t header_len = read_u64_le(bytes);
  SD_CHECK(header_len <= kMaxSafetensorsHeaderBytes, origin, ": header length ", header_len,
           " bytes exceeds the limit of ", kMaxSafetensorsHeaderBytes, " bytes");
  SD_CHECK(header_len <= file_size - 8, origin, ": header length ", header_len, " bytes is larger than the file (",
           file_size, " bytes)");
  SD_CHECK(header_len <= available - 8, origin, ": header of ", header_len, " bytes is not fully readable");
  SD_CHECK(header_len >= 2, origin, ": header of ", header_len, " bytes cannot hold a JSON object");

  const char* text = reinterpret_cast<const char*>(bytes + 8);
  // A valid header nests at most three levels ({name: {shape: [dims]}}); deeper input is refused
  // while parsing, so a hostile 100 MiB "[[[[..." cannot make the parser build a huge tree.
  // Keys are tracked per object because nlohmann would otherwise keep the last of two equal keys
  // silently (a second "data_offsets" could point a tensor anywhere).
  constexpr int kMaxDepth = 3;
  std::set<std::string> keys_at_depth[kMaxDepth + 1];
  std::string current_tensor;
  json::parser_callback_t check_structure = [&](int depth, json::parse_event_t event, json& parsed) {
    const bool opens = event == json::parse_event_t::object_start || event == json::parse_event_t::array_start;
    if (opens) {
      SD_CHECK(depth < kMaxDepth, origin, ": ",
               current_tensor.empty() ? std::string() : "tensor '" + current_tensor + "': ",
               "header nests deeper than a safetensors header can (", kMaxDepth, " levels)");
      if (event == json::parse_event_t::object_start) keys_at_depth[depth + 1].clear();
    }
    if (event == json::parse_event_t::key && depth <= kMaxDepth) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (depth == 1) {
        SD_CHECK(keys_at_depth[1].insert(key).second, origin, ": tensor '", key, "' appears twice in the header");
        current_tensor = key;
      } else {
        SD_CHECK(keys_at_depth[depth].insert(key).second, origin, ": tensor '", current_tensor, "': field '", key,
                 "' appears twice");
      }
    }
    return true;
  };
  json header;
  try {
    header = json::parse(text, text + header_len, check_structure);
  } catch (const json::exception& e) {
    SD_FAIL(origin, ": header is not valid JSON: ", e.what());
  }
  SD_CHECK(header.is_object(), origin, ": header must be a JSON object, got ", header.type_name());

  SafetensorsHeader result;
  result.data_offset = 8 + header_len;
  const uint64_t data_size = file_size - result.data_offset;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& value = it.value();
    if (name == "__metadata__") {
      SD_CHECK(value.is_object(), origin, ": __metadata__ must be an object of strings");
      for (auto m = value.begin(); m != value.end(); ++m) {
        SD_CHECK(m.value().is_string(), origin, ": __metadata__ entry '", m.key(), "' is not a string");
        result.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    SD_CHECK(value.is_object(), origin, ": tensor '", name, "': entry must be an object");
    TensorEntry entry;
    entry.name = name;
    auto dtype_it = value.find("dtype");
    SD_CHECK(dtype_it != value.end() && dtype_it->is_string(), origin, ": tensor '", name, "': missing dtype");
    SD_CHECK(dtype_from_name(dtype_it->get<std::string>(), &entry.dtype), origin, ": tensor '", name,
             "': unsupported dtype '", dtype_it->get<std::string>(), "'");
    auto shape_it = value.find("shape");
    SD_CHECK(shape_it != value.end() && shape_it->is_array(), origin, ": tensor '", name, "': missing shape");
    SD_CHECK(shape_it->size() <= 16, origin, ": tensor '", name, "': ", shape_it->size(), " dimensions is too many");
    uint64_t numel = 1;
    bool overflow = false;
    for (const auto& dim : *shape_it) {
      uint64_t d = json_u64(dim, origin, name, "shape");
      SD_CHECK(d <= static_cast<uint64_t>(INT64_MAX), origin, ": tensor '", name, "': dimension ", d, " too large");
      entry.shape.push_back(static_cast<int64_t>(d));
      overflow = overflow || __builtin_mul_overflow(numel, d, &numel);
    }
    auto off_it = value.find("data_offsets");
    SD_CHECK(off_it != value.end() && off_it->is_array() && off_it->size() == 2, origin, ": tensor '", name,
             "': data_offsets must be [begin, end]");
    entry.data_begin = json_u64((*off_it)[0], origin, name, "data_offsets");
    entry.data_end = json_u64((*off_it)[1], origin, name, "data_offsets");
    SD_CHECK(entry.data_begin <= entry.data_end, origin, ": tensor '", name, "': data_offsets [", entry.data_begin,
             ", ", entry.data_end, "] end before they begin");
    SD_CHECK(entry.data_end <= data_size, origin, ": tensor '", name, "': data_offsets [", entry.data_begin, ", ",
             entry.data_end, "] run past the end of the data section (", data_size, " bytes)");
    uint64_t nbytes = 0;
    overflow = overflow || __builtin_mul_overflow(numel, static_cast<uint64_t>(c10::elementSize(entry.dtype)), &nbytes);
    SD_CHECK(!overflow && nbytes == entry.data_end - entry.data_begin, origin, ": tensor '", name, "': shape ",
             c10::IntArrayRef(entry.shape), " of ", dtype_it->get<std::string>(), " needs ",
             overflow ? std::string("more than 2^64") : std::to_string(nbytes), " bytes but data_offsets hold ",
             entry.data_end - entry.data_begin);
    result.tensors.push_back(std::move(entry));
  }
  std::sort(result.tensors.begin(), result.tensors.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return a.data_begin != b.data_begin ? a.data_begin < b.data_begin : a.data_end < b.data_end;
  });
  uint64_t expected_begin = 0;
  for (const auto& entry : result.tensors) {
    SD_CHECK(entry.data_begin >= expected_begin, origin, ": tensor '", entry.name, "' overlaps the tensor before it (",
             "its data begins at ", entry.data_begin, ", the previous one ends at ", expected_begin, ")");
    SD_CHECK(entry.data_begin == expected_begin, origin, ": tensor '", entry.name, "': gap of ",
             entry.data_begin - expected_begin, " unused bytes before its data at offset ", expected_begin);
    expected_begin = entry.data_end;
  }
  SD_CHECK(expected_begin == data_size, origin, ": ", data_size - expected_begin,
           " bytes at the end of the data section belong to no tensor",
           result.tensors.empty() ? std::string() : " (the last one, '" + result.tensors.back().name + "', ends at " +
                                                        std::to_string(expected_begin) + ")",
           "; truncated or corrupt header?");
  return result;
}

struct SafetensorsFile::Mapping {
  void* address = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (address != nullptr && address != MAP_FAILED) ::munmap(address, size);
  }
};

bool is_pickle_file(const std::filesystem::path& path) {
  std::string extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return extension == ".ckpt" || extension == ".bin" || extension == ".pt" || extension == ".pth";
}

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : path_(path) {
  const std::string origin = path.string();
  SD_CHECK(!is_pickle_file(path), origin,
           ": pickle checkpoints can run arbitrary code and are never loaded; convert it to .safetensors");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  SD_CHECK(fd >= 0, origin, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    SD_FAIL(origin, ": not a regular file");
  }
  mapping_ = std::make_shared<Mapping>();
  mapping_->size = static_cast<size_t>(st.st_size);
  if (mapping_->size > 0) {
    // Private and writable: a stray write to a view copies the page instead of faulting, and
    // never reaches the file.
    mapping_->address = ::mmap(nullptr, mapping_->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  }
  ::close(fd);
  SD_CHECK(mapping_->size == 0 || mapping_->address != MAP_FAILED, origin, ": mmap failed: ", std::strerror(errno));
  const auto* bytes = static_cast<const uint8_t*>(mapping_->address);
  static const uint8_t kEmpty[8] = {};
  header_ = parse_safetensors_header(mapping_->size ? bytes : kEmpty, mapping_->size, mapping_->size, origin);
  for (size_t i = 0; i < header_.tensors.size(); ++i) index_[header_.tensors[i].name] = i;
}

SafetensorsFile::~SafetensorsFile() = default;
SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;

uint64_t SafetensorsFile::file_size() const { return mapping_ ? mapping_->size : 0; }

const TensorEntry& SafetensorsFile::entry(const std::string& name) const {
  auto it = index_.find(name);
  SD_CHECK(it != index_.end(), path_.string(), ": no tensor named '", name, "'");
  return header_.tensors[it->second];
}

at::Tensor SafetensorsFile::get(const std::string& name) const {
  const TensorEntry& e = entry(name);
  auto options = torch::TensorOptions().dtype(e.dtype).device(torch::kCPU);
  if (e.data_end == e.data_begin) return torch::empty(e.shape, options);
  auto* data = static_cast<uint8_t*>(mapping_->address) + header_.data_offset + e.data_begin;
  auto keep_alive = mapping_;
  at::Tensor view = torch::from_blob(data, e.shape, [keep_alive](void*) {}, options);
  if (reinterpret_cast<uintptr_t>(data) % c10::elementSize(e.dtype) != 0) return view.clone();
  return view;
}

StateDict SafetensorsFile::all() const {
  StateDict result;
  for (const auto& e : header_.tensors) result.emplace(e.name, get(e.name));
  return result;
}

StateDict load_safetensors(const std::filesystem::path& path) { return SafetensorsFile(path).all(); }

void save_safetensors(const std::filesystem::path& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // The header is JSON, whose strings are UTF-8: say which name is not, before nlohmann's dump()
  // would throw its own exception type deep inside the write (found by fuzz_lora_file).
  auto check_utf8 = [&](const std::string& text, const char* what) {
    try {
      (void)json(text).dump();
    } catch (const json::exception&) {
      // Quoted by dump(), with U+FFFD for the bytes that are not UTF-8.
      SD_FAIL(path.string(), ": ", what, " ", json(text).dump(-1, ' ', false, json::error_handler_t::replace),
              " is not valid UTF-8");
    }
  };
  json header = json::object();
  for (const auto& [key, value] : metadata) {
    check_utf8(key, "metadata key");
    check_utf8(value, "metadata value");
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> contiguous;
  contiguous.reserve(tensors.size());
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    SD_CHECK(!name.empty() && name != "__metadata__", path.string(), ": invalid tensor name '", name, "'");
    check_utf8(name, "tensor name");
    SD_CHECK(!header.contains(name), path.string(), ": tensor '", name, "' given twice");
    SD_CHECK(tensor.defined(), path.string(), ": tensor '", name, "' is undefined");
    at::Tensor cpu = tensor.to(torch::kCPU).contiguous();
    const uint64_t nbytes = cpu.numel() * cpu.element_size();
    std::string dtype;
    try {
      dtype = safetensors_dtype_name(cpu.scalar_type());
    } catch (const Error& e) {
      SD_FAIL(path.string(), ": tensor '", name, "': ", e.what());
    }
    header[name] = {{"dtype", dtype},
                    {"shape", cpu.sizes().vec()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    contiguous.push_back(std::move(cpu));
  }
  std::string text = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
  text.append((8 - text.size() % 8) % 8, ' ');
  write_file_atomic(path, [&](std::ostream& out) {
    uint8_t len[8];
    uint64_t n = text.size();
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& t : contiguous) {
      out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.numel() * t.element_size()));
    }
  });
}

void save_safetensors(const std::filesystem::path& path, const StateDict& tensors,
                      const std::map<std::string, std::string>& metadata) {
  save_safetensors(path, NamedTensors(tensors.begin(), tensors.end()), metadata);
}

}  // namespace sd
