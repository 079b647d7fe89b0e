// The safetensors reader against hostile files, and the writer's round trips and atomicity.
// Every file lives in a fresh folder under the system temp directory, removed afterwards.
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <unistd.h>
#include <vector>

#include "golden.h"
#include "sd/atomic_file.h"
#include "sd/error.h"
#include "sd/pipeline.h"
#include "sd/safetensors.h"

namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<unsigned> counter{0};
    path = fs::temp_directory_path() /
           ("libsd-safetensors-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  std::vector<std::string> files() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(path)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
};

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string u64_le(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(n >> (8 * i));
  return s;
}

// A file: header length (the real one unless overridden), the header text, then `data_bytes` zero bytes.
std::string safetensors_bytes(const std::string& header, size_t data_bytes, int64_t header_len = -1) {
  const uint64_t len = header_len < 0 ? header.size() : static_cast<uint64_t>(header_len);
  return u64_le(len) + header + std::string(data_bytes, '\0');
}

std::string error_opening(const fs::path& path) {
  try {
    sd::SafetensorsFile file(path);
  } catch (const sd::Error& e) {
    return e.what();
  }
  FAIL("opening " << path << " did not throw sd::Error");
  return {};
}

// Writes `bytes` as <dir>/<name>.safetensors, opens it, and checks the error names the file and
// every one of `mentions` (the tensor, the field).
void check_rejected(const TempDir& dir, const std::string& name, const std::string& bytes,
                    const std::vector<std::string>& mentions) {
  const fs::path path = dir.path / (name + ".safetensors");
  write_bytes(path, bytes);
  const std::string message = error_opening(path);
  INFO("error: " << message);
  CHECK_THAT(message, Catch::Contains(path.string()));
  for (const auto& m : mentions) CHECK_THAT(message, Catch::Contains(m));
}

std::string f32_entry(const std::string& name, const std::string& shape, uint64_t begin, uint64_t end) {
  return "\"" + name + "\":{\"dtype\":\"F32\",\"shape\":" + shape + ",\"data_offsets\":[" + std::to_string(begin) +
         "," + std::to_string(end) + "]}";
}

}  // namespace

TEST_CASE("safetensors: a minimal hand-written file opens (the hostile cases below differ from it in one way)",
          "[unit][safetensors]") {
  TempDir dir;
  const fs::path path = dir.path / "ok.safetensors";
  std::string data = u64_le(0);
  const float value = 1.5f;
  std::string header = "{" + f32_entry("w", "[1]", 0, 4) + ",\"__metadata__\":{\"format\":\"pt\"}}";
  write_bytes(path, u64_le(header.size()) + header + std::string(reinterpret_cast<const char*>(&value), 4));
  sd::SafetensorsFile file(path);
  REQUIRE(file.contains("w"));
  CHECK(file.get("w").item<float>() == 1.5f);
  CHECK(file.metadata().at("format") == "pt");
}

TEST_CASE("safetensors: hostile files are refused with an sd::Error naming the file and the tensor",
          "[unit][safetensors]") {
  TempDir dir;
  SECTION("shorter than the 8-byte length") { check_rejected(dir, "short", std::string(5, '\x01'), {"8-byte"}); }
  SECTION("empty file") { check_rejected(dir, "empty", "", {"8-byte"}); }
  SECTION("header length larger than the file") {
    check_rejected(dir, "long_header", safetensors_bytes("{}", 0, 1000), {"larger than the file"});
  }
  SECTION("header length over the 100 MiB limit") {
    check_rejected(dir, "huge_header", safetensors_bytes("{}", 0, int64_t{1} << 40), {"exceeds the limit"});
  }
  SECTION("header length with the top bit set") {
    check_rejected(dir, "top_bit", u64_le(~uint64_t{0}) + "{}", {"exceeds the limit"});
  }
  SECTION("invalid JSON") {
    check_rejected(dir, "bad_json", safetensors_bytes("{\"w\":{\"dtype\":", 0), {"not valid JSON"});
  }
  SECTION("invalid UTF-8 in a name") {
    check_rejected(dir, "bad_utf8", safetensors_bytes("{\"\xff\xfe\":{}}", 0), {"not valid JSON"});
  }
  SECTION("header is not an object") { check_rejected(dir, "array", safetensors_bytes("[1,2]", 0), {"object"}); }
  SECTION("tensor entry is not an object") {
    check_rejected(dir, "entry", safetensors_bytes("{\"w\":[0,4]}", 4), {"'w'", "object"});
  }
  SECTION("offsets past the end of the data") {
    check_rejected(dir, "past_end", safetensors_bytes("{" + f32_entry("w", "[2]", 0, 8) + "}", 4),
                   {"'w'", "past the end"});
  }
  SECTION("end before begin") {
    check_rejected(dir, "reversed", safetensors_bytes("{" + f32_entry("w", "[2]", 8, 0) + "}", 8),
                   {"'w'", "end before they begin"});
  }
  SECTION("overlapping tensors") {
    check_rejected(dir, "overlap",
                   safetensors_bytes("{" + f32_entry("a", "[2]", 0, 8) + "," + f32_entry("b", "[2]", 4, 12) + "}", 12),
                   {"'b'", "overlaps"});
  }
  SECTION("two tensors on the same bytes") {
    check_rejected(dir, "alias",
                   safetensors_bytes("{" + f32_entry("a", "[2]", 0, 8) + "," + f32_entry("b", "[2]", 0, 8) + "}", 8),
                   {"overlaps"});
  }
  SECTION("gap between tensors") {
    check_rejected(dir, "gap",
                   safetensors_bytes("{" + f32_entry("a", "[1]", 0, 4) + "," + f32_entry("b", "[1]", 8, 12) + "}", 12),
                   {"'b'", "gap"});
  }
  SECTION("trailing bytes after the last tensor") {
    check_rejected(dir, "trailing", safetensors_bytes("{" + f32_entry("a", "[1]", 0, 4) + "}", 8),
                   {"'a'", "belong to no tensor"});
  }
  SECTION("shape x dtype size differs from the byte range") {
    check_rejected(dir, "size", safetensors_bytes("{" + f32_entry("w", "[3]", 0, 8) + "}", 8),
                   {"'w'", "needs 12 bytes", "hold 8"});
  }
  SECTION("shape product overflows 64 bits") {
    check_rejected(dir, "overflow",
                   safetensors_bytes("{" + f32_entry("w", "[4294967296,4294967296,16]", 0, 4) + "}", 4),
                   {"'w'", "more than 2^64"});
  }
  SECTION("element count x element size overflows 64 bits") {
    check_rejected(dir, "overflow_bytes", safetensors_bytes("{" + f32_entry("w", "[4611686018427387905]", 0, 4) + "}", 4),
                   {"'w'", "more than 2^64"});
  }
  SECTION("dimension beyond int64") {
    check_rejected(dir, "dim_big", safetensors_bytes("{" + f32_entry("w", "[18446744073709551615]", 0, 4) + "}", 4),
                   {"'w'", "too large"});
  }
  SECTION("negative dimension") {
    check_rejected(dir, "negative", safetensors_bytes("{" + f32_entry("w", "[-1]", 0, 4) + "}", 4),
                   {"'w'", "non-negative integers", "-1"});
  }
  SECTION("float dimension") {
    check_rejected(dir, "float_dim", safetensors_bytes("{" + f32_entry("w", "[1.5]", 0, 4) + "}", 4),
                   {"'w'", "non-negative integers", "1.5"});
  }
  SECTION("negative offset") {
    check_rejected(dir, "negative_offset",
                   safetensors_bytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4),
                   {"'w'", "data_offsets"});
  }
  SECTION("unknown dtype") {
    check_rejected(dir, "dtype",
                   safetensors_bytes("{\"w\":{\"dtype\":\"Q4_K\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                   {"'w'", "Q4_K"});
  }
  SECTION("missing data_offsets") {
    check_rejected(dir, "no_offsets", safetensors_bytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4),
                   {"'w'", "data_offsets"});
  }
  SECTION("duplicate tensor names") {
    check_rejected(dir, "duplicate",
                   safetensors_bytes("{" + f32_entry("w", "[1]", 0, 4) + "," + f32_entry("w", "[1]", 4, 8) + "}", 8),
                   {"'w'", "twice"});
  }
  SECTION("duplicate field inside an entry") {
    check_rejected(
        dir, "duplicate_field",
        safetensors_bytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"data_offsets\":[0,4]}}", 4),
        {"'w'", "'data_offsets'", "twice"});
  }
  SECTION("nesting deeper than a header can") {
    check_rejected(dir, "deep", safetensors_bytes("{\"w\":{\"shape\":[[[[1]]]]}}", 0), {"'w'", "nests deeper"});
    check_rejected(dir, "deep_top", safetensors_bytes(std::string(1000, '[') + std::string(1000, ']'), 0),
                   {"nests deeper"});
  }
  SECTION("non-string metadata") {
    check_rejected(dir, "metadata",
                   safetensors_bytes("{\"__metadata__\":{\"steps\":1000}," + f32_entry("w", "[1]", 0, 4) + "}", 4),
                   {"__metadata__", "'steps'", "not a string"});
  }
  SECTION("metadata that is not an object") {
    check_rejected(dir, "metadata_array", safetensors_bytes("{\"__metadata__\":[\"a\"]}", 0), {"__metadata__"});
  }
}

TEST_CASE("safetensors: every truncation and single-byte corruption of a valid header parses or throws sd::Error",
          "[unit][safetensors]") {
  const std::string header = "{" + f32_entry("a", "[2,1]", 0, 8) + "," + f32_entry("b", "[1]", 8, 12) +
                             ",\"__metadata__\":{\"k\":\"v\"}}";
  const std::string file = safetensors_bytes(header, 12);
  size_t rejected = 0;
  auto parse = [&](const std::string& bytes) {
    try {
      auto parsed = sd::parse_safetensors_header(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                                 bytes.size(), "mutated");
      // What the parser accepts must describe tensors inside the data section.
      for (const auto& t : parsed.tensors) CHECK(parsed.data_offset + t.data_end <= bytes.size());
    } catch (const sd::Error& e) {
      ++rejected;
      CHECK_THAT(e.what(), Catch::StartsWith("mutated: "));
    }
  };
  for (size_t n = 0; n < file.size(); ++n) parse(file.substr(0, n));
  CHECK(rejected == file.size());  // every proper prefix is invalid
  for (size_t i = 0; i < 8 + header.size(); ++i) {
    for (unsigned char replacement : {'\0', '"', '}', '9', '-', '\xff'}) {
      std::string mutated = file;
      mutated[i] = static_cast<char>(replacement);
      parse(mutated);
    }
  }
}

TEST_CASE("safetensors: pickle checkpoints are refused by extension", "[unit][safetensors]") {
  TempDir dir;
  for (const char* name : {"model.ckpt", "pytorch_model.bin", "model.pt", "model.pth", "MODEL.CKPT"}) {
    const fs::path path = dir.path / name;
    write_bytes(path, safetensors_bytes("{}", 0));  // even a valid safetensors body behind that name
    const std::string message = error_opening(path);
    INFO(message);
    CHECK_THAT(message, Catch::Contains(path.string()) && Catch::Contains("pickle"));
    CHECK(sd::is_pickle_file(path));
  }
  CHECK_FALSE(sd::is_pickle_file("model.safetensors"));
  CHECK_FALSE(sd::is_pickle_file("binary"));
  // A diffusers folder whose UNet weights come only as a pickle (any case) names that file.
  for (const char* name : {"diffusion_pytorch_model.bin", "diffusion_pytorch_model.PTH"}) {
    TempDir model;
    const fs::path golden_pipeline = golden::dir() / "pipelines/sd1_tiny";
    fs::copy(golden_pipeline, model.path, fs::copy_options::recursive);
    fs::remove(model.path / "unet/diffusion_pytorch_model.safetensors");
    write_bytes(model.path / "unet" / name, "not loaded");
    try {
      sd::Pipeline::load(model.path.string());
      FAIL("a pickle-only UNet folder loaded");
    } catch (const sd::Error& e) {
      INFO(e.what());
      CHECK_THAT(e.what(), Catch::Contains(name) && Catch::Contains("pickle"));
    }
  }
}

TEST_CASE("safetensors: writer round trips dtypes, 0-d and empty tensors and metadata", "[unit][safetensors]") {
  TempDir dir;
  const fs::path path = dir.path / "round_trip.safetensors";
  torch::manual_seed(0);
  const sd::NamedTensors tensors = {
      {"f32", torch::randn({3, 4})},
      {"f16", torch::randn({5}).to(torch::kHalf)},
      {"bf16", torch::randn({2, 3}).to(torch::kBFloat16)},
      {"i64", torch::tensor({int64_t{1} << 40, int64_t{-7}, int64_t{0}})},
      {"i32", torch::tensor({1, -2, 3}, torch::kInt)},
      {"u8", torch::tensor({0, 128, 255}, torch::kByte)},
      {"scalar", torch::tensor(2.5f)},
      {"empty", torch::empty({0, 3})},
      {"transposed", torch::arange(6, torch::kFloat).reshape({2, 3}).t()},  // written contiguous
  };
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "ünïcode \"quoted\""}};
  sd::save_safetensors(path, tensors, metadata);
  CHECK(dir.files() == std::vector<std::string>{"round_trip.safetensors"});

  const std::string bytes = read_bytes(path);
  REQUIRE(bytes.size() >= 8);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(bytes[i]);
  CHECK((8 + header_len) % 8 == 0);  // data section aligned for zero-copy views

  sd::SafetensorsFile file(path);
  CHECK(file.metadata() == metadata);
  CHECK(file.entries().size() == tensors.size());
  for (const auto& [name, expected] : tensors) {
    INFO(name);
    REQUIRE(file.contains(name));
    const at::Tensor actual = file.get(name);
    CHECK(actual.scalar_type() == expected.scalar_type());
    CHECK(actual.sizes() == expected.sizes());
    CHECK(torch::equal(actual, expected.contiguous()));
  }
  // Views stay valid after the file object is gone.
  at::Tensor kept = sd::SafetensorsFile(path).get("f32");
  CHECK(torch::equal(kept, tensors[0].second));
}

TEST_CASE("safetensors: writer is atomic: a failure leaves no file, no temporary file, and the old file intact",
          "[unit][safetensors]") {
  TempDir dir;
  const fs::path path = dir.path / "model.safetensors";
  SECTION("unsupported dtype in the middle, over an existing file") {
    write_bytes(path, "old contents");
    const sd::NamedTensors tensors = {{"a", torch::ones({2})},
                                      {"complex", torch::ones({2}, torch::kComplexFloat)},
                                      {"b", torch::ones({2})}};
    try {
      sd::save_safetensors(path, tensors);
      FAIL("save_safetensors accepted a complex tensor");
    } catch (const sd::Error& e) {
      CHECK_THAT(e.what(), Catch::Contains(path.string()) && Catch::Contains("'complex'"));
    }
    CHECK(read_bytes(path) == "old contents");
    CHECK(dir.files() == std::vector<std::string>{"model.safetensors"});
  }
  SECTION("undefined tensor, no existing file") {
    CHECK_THROWS_AS(sd::save_safetensors(path, sd::NamedTensors{{"a", torch::ones({2})}, {"u", at::Tensor()}}),
                    sd::Error);
    CHECK(dir.files().empty());
  }
  SECTION("duplicate name") {
    CHECK_THROWS_WITH(sd::save_safetensors(path, sd::NamedTensors{{"a", torch::ones({2})}, {"a", torch::ones({2})}}),
                      Catch::Contains("'a'"));
    CHECK(dir.files().empty());
  }
  SECTION("a name or metadata that is not UTF-8 (JSON strings are): sd::Error naming it, no file") {
    const std::string bad = "unet.attentio\xdcs.0";  // found by fuzz_lora_file
    CHECK_THROWS_WITH(sd::save_safetensors(path, sd::NamedTensors{{bad, torch::ones({2})}}),
                      Catch::Contains("tensor name \"unet.attentio") && Catch::Contains("not valid UTF-8"));
    CHECK_THROWS_WITH(sd::save_safetensors(path, sd::NamedTensors{{"a", torch::ones({2})}}, {{"note", bad}}),
                      Catch::Contains("metadata value") && Catch::Contains("not valid UTF-8"));
    CHECK(dir.files().empty());
  }
  SECTION("a throw while the bytes are being written (the writer's atomic file)") {
    write_bytes(path, "old contents");
    CHECK_THROWS_WITH(sd::write_file_atomic(path,
                                            [](std::ostream& out) {
                                              out << std::string(1 << 16, 'x');
                                              throw sd::Error("disk on fire");
                                            }),
                      Catch::Contains("disk on fire"));
    CHECK(read_bytes(path) == "old contents");
    CHECK(dir.files() == std::vector<std::string>{"model.safetensors"});
  }
  SECTION("success replaces the existing file") {
    write_bytes(path, "old contents");
    sd::save_safetensors(path, sd::NamedTensors{{"a", torch::ones({2})}});
    CHECK(torch::equal(sd::load_safetensors(path).at("a"), torch::ones({2})));
    CHECK(dir.files() == std::vector<std::string>{"model.safetensors"});
  }
}
