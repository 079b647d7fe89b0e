#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "golden.h"
#include "sd/error.h"
#include "sd/tokenizer.h"

namespace fs = std::filesystem;

namespace {

const nlohmann::json& tokenizer_cases() {
  static const nlohmann::json cases = [] {
    std::ifstream in(golden::dir() / "tokenizer_cases.json");
    REQUIRE(in.good());
    return nlohmann::json::parse(in);
  }();
  return cases;
}

const sd::CLIPTokenizer& sd15_tokenizer() {
  static const sd::CLIPTokenizer tok = sd::CLIPTokenizer::from_folder(golden::dir() / "tokenizer");
  return tok;
}

std::string first_mismatch(const std::vector<int64_t>& actual, const std::vector<int64_t>& expected) {
  std::ostringstream out;
  for (size_t i = 0; i < std::max(actual.size(), expected.size()); ++i) {
    const bool have_a = i < actual.size(), have_e = i < expected.size();
    if (have_a && have_e && actual[i] == expected[i]) continue;
    out << "first mismatch at index " << i << ": got " << (have_a ? std::to_string(actual[i]) : "<end>")
        << ", expected " << (have_e ? std::to_string(expected[i]) : "<end>");
    return out.str();
  }
  return "identical";
}

// A scratch folder removed on scope exit.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name) {
    path = fs::temp_directory_path() / ("libsd_test_tokenizer_" + name + "_" +
                                             std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  void write(const std::string& file, const std::string& text) const { std::ofstream(path / file) << text; }
  void copy_from_golden(const std::string& file) const {
    fs::copy_file(golden::dir() / "tokenizer" / file, path / file);
  }
};

int64_t vocab_id(const sd::CLIPTokenizer& tok, const std::string& token) {
  for (int64_t id = 0; id < static_cast<int64_t>(tok.vocab_size()); ++id)
    if (tok.id_to_token(id) == token) return id;
  FAIL("token " << token << " not in the vocabulary");
  return -1;
}

}  // namespace

TEST_CASE("tokenizer: every golden case matches transformers' CLIPTokenizer", "[unit][tokenizer]") {
  const auto& cases = tokenizer_cases()["cases"];
  REQUIRE(cases.size() == 21);
  std::map<std::string, sd::CLIPTokenizer> loaded;
  for (const auto& c : cases) {
    const std::string prompt = c["prompt"].get<std::string>();
    INFO("prompt: \"" << prompt << "\"");
    const std::string folder = c["tokenizer_dir"].get<std::string>();
    if (!loaded.count(folder)) loaded.emplace(folder, sd::CLIPTokenizer::from_folder(golden::dir() / folder));
    const sd::CLIPTokenizer& tok = loaded.at(folder);
    const auto expected = c["input_ids"].get<std::vector<int64_t>>();
    const auto untruncated = c["untruncated_ids"].get<std::vector<int64_t>>();

    const sd::TokenizedPrompt encoded = tok.encode(prompt);
    INFO("input_ids: " << first_mismatch(encoded.ids, expected));
    CHECK(encoded.ids == expected);

    const std::vector<int64_t> body(untruncated.begin() + 1, untruncated.end() - 1);
    const std::vector<int64_t> ids = tok.tokenize_ids(prompt);
    INFO("untruncated: " << first_mismatch(ids, body));
    CHECK(ids == body);

    const int untruncated_tokens = c["num_tokens_untruncated"].get<int>() - 2;  // golden counts BOS/EOS
    CHECK(encoded.num_tokens == untruncated_tokens);
    CHECK((encoded.num_truncated > 0) == c["truncated"].get<bool>());
    CHECK(encoded.num_truncated == std::max(0, untruncated_tokens - (tok.max_length() - 2)));
    CHECK(tok.pad_id() == c["pad_token_id"].get<int64_t>());

    // The golden BPE strings cover the first tokens; they must be what the ids spell.
    const auto bpe_tokens = c["bpe_tokens"].get<std::vector<std::string>>();
    for (size_t i = 0; i < bpe_tokens.size() && i < ids.size(); ++i) CHECK(tok.id_to_token(ids[i]) == bpe_tokens[i]);
  }
}

TEST_CASE("tokenizer: special ids and limits come from the SD 1.5 config", "[unit][tokenizer]") {
  const auto& tok = sd15_tokenizer();
  CHECK(tok.bos_id() == vocab_id(tok, "<|startoftext|>"));
  CHECK(tok.eos_id() == vocab_id(tok, "<|endoftext|>"));
  CHECK(tok.pad_id() == tok.eos_id());
  CHECK(tok.max_length() == 77);
  CHECK(tok.vocab_size() == 49408);
  CHECK_THROWS_AS(tok.id_to_token(49408), sd::Error);
  CHECK_THROWS_AS(tok.id_to_token(-1), sd::Error);

  // The tiny pipeline and the SD 1.5 folder ship the same tokenizer: same ids, same padding.
  const std::string prompt = tokenizer_cases()["cases"][0]["prompt"].get<std::string>();
  for (const char* folder : {"pipelines/sd1_tiny/tokenizer", "sd-v1-5/tokenizer"}) {
    INFO(folder);
    const auto other = sd::CLIPTokenizer::from_folder(golden::dir() / folder);
    CHECK(other.encode(prompt).ids == tok.encode(prompt).ids);
    CHECK(other.pad_id() == tok.pad_id());
  }
}

TEST_CASE("tokenizer: truncation keeps 75 tokens plus BOS and EOS and counts the rest", "[unit][tokenizer]") {
  const auto& tok = sd15_tokenizer();
  const std::vector<int64_t> dog = tok.tokenize_ids("dog");
  REQUIRE(dog.size() == 1);
  std::string prompt;
  for (int i = 0; i < 100; ++i) prompt += "dog ";
  const sd::TokenizedPrompt encoded = tok.encode(prompt);
  CHECK(encoded.num_tokens == 100);
  CHECK(encoded.num_truncated == 25);
  REQUIRE(encoded.ids.size() == 77);
  CHECK(encoded.ids.front() == tok.bos_id());
  CHECK(encoded.ids[75] == dog[0]);
  CHECK(encoded.ids[76] == tok.eos_id());

  // Exactly 75 tokens fit without truncation.
  const sd::TokenizedPrompt fits = tok.encode(prompt.substr(0, 75 * 4));
  CHECK(fits.num_tokens == 75);
  CHECK(fits.num_truncated == 0);
  CHECK(fits.ids[76] == tok.eos_id());
}

TEST_CASE("tokenizer: special tokens written in the prompt split the text and keep their ids", "[unit][tokenizer]") {
  const auto& tok = sd15_tokenizer();
  const int64_t a = vocab_id(tok, "a</w>"), b = vocab_id(tok, "b</w>");
  CHECK(tok.tokenize_ids("a<|endoftext|>b") == std::vector<int64_t>{a, tok.eos_id(), b});
  CHECK(tok.tokenize_ids("<|startoftext|>a") == std::vector<int64_t>{tok.bos_id(), a});
  // The raw text is split before clean-up, so punctuation does not run into the special token.
  std::vector<int64_t> expected = tok.tokenize_ids("!!");
  expected.push_back(tok.eos_id());
  CHECK(tok.tokenize_ids("!!<|endoftext|>") == expected);
  // Lower-casing happens after the split: the upper-case spelling still reaches the pattern's
  // special-token alternative and the reference's seeded BPE cache.
  CHECK(tok.tokenize_ids("<|ENDOFTEXT|>") == std::vector<int64_t>{tok.eos_id()});
}

TEST_CASE("tokenizer: an SD 2.x-style config pads with \"!\"", "[unit][tokenizer]") {
  TempDir dir("sd2");
  dir.copy_from_golden("vocab.json");
  dir.copy_from_golden("merges.txt");
  dir.write("tokenizer_config.json", R"({"model_max_length": 77, "pad_token": "!", "do_lower_case": true})");
  const auto tok = sd::CLIPTokenizer::from_folder(dir.path);
  const int64_t bang = vocab_id(tok, "!");
  CHECK(tok.pad_id() == bang);
  CHECK(tok.eos_id() == vocab_id(tok, "<|endoftext|>"));
  const sd::TokenizedPrompt encoded = tok.encode("a photo of a cat");
  CHECK(encoded.num_tokens == 5);
  CHECK(encoded.ids[6] == tok.eos_id());
  CHECK(encoded.ids[7] == bang);
  CHECK(encoded.ids[76] == bang);
  // The pad token is an added token in transformers, so a "!" in the text is split out as id 0
  // instead of becoming "!</w>".
  CHECK(tok.tokenize_ids("wow!") == std::vector<int64_t>{vocab_id(tok, "wow</w>"), bang});
  CHECK(sd15_tokenizer().tokenize_ids("wow!") ==
        std::vector<int64_t>{vocab_id(tok, "wow</w>"), vocab_id(tok, "!</w>")});

  // special_tokens_map.json wins over tokenizer_config.json, and takes AddedToken objects.
  dir.write("special_tokens_map.json", R"({"pad_token": {"content": "<|endoftext|>", "lstrip": false}})");
  CHECK(sd::CLIPTokenizer::from_folder(dir.path).pad_id() == tok.eos_id());
}

TEST_CASE("tokenizer: invalid UTF-8 is an sd::Error giving the offset", "[unit][tokenizer]") {
  const auto& tok = sd15_tokenizer();
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(tok.encode("abc\xff"), Contains("not valid UTF-8") && Contains("offset 3"));
  CHECK_THROWS_AS(tok.encode("caf\xc3"), sd::Error);              // truncated sequence
  CHECK_THROWS_AS(tok.encode("\xc0\xaf"), sd::Error);             // overlong "/"
  CHECK_THROWS_AS(tok.encode("\xed\xa0\x80"), sd::Error);         // UTF-16 surrogate
  CHECK_THROWS_AS(tok.encode("\xf4\x90\x80\x80"), sd::Error);     // past U+10FFFF
  CHECK_THROWS_AS(tok.tokenize_ids("a\x80"), sd::Error);          // stray continuation byte
  CHECK_NOTHROW(tok.encode("caf\xc3\xa9 \xf0\x9f\x99\x82"));       // valid 2- and 4-byte sequences
}

TEST_CASE("tokenizer: missing or malformed files name the file", "[unit][tokenizer]") {
  using Catch::Matchers::Contains;
  TempDir dir("missing");
  CHECK_THROWS_WITH(sd::CLIPTokenizer::from_folder(dir.path / "nope"), Contains("nope"));
  CHECK_THROWS_WITH(sd::CLIPTokenizer::from_folder(dir.path), Contains("vocab.json"));
  dir.copy_from_golden("vocab.json");
  CHECK_THROWS_WITH(sd::CLIPTokenizer::from_folder(dir.path), Contains("merges.txt"));
  dir.copy_from_golden("merges.txt");
  CHECK_NOTHROW(sd::CLIPTokenizer::from_folder(dir.path));  // the JSON configs are optional
  dir.write("tokenizer_config.json", "{ not json");
  CHECK_THROWS_WITH(sd::CLIPTokenizer::from_folder(dir.path), Contains("tokenizer_config.json"));
  dir.write("tokenizer_config.json", R"({"pad_token": "no-such-token"})");
  CHECK_THROWS_WITH(sd::CLIPTokenizer::from_folder(dir.path), Contains("no-such-token"));
  dir.write("tokenizer_config.json", R"({"model_max_length": 1})");
  CHECK_THROWS_WITH(sd::CLIPTokenizer::from_folder(dir.path), Contains("model_max_length"));
}

TEST_CASE("tokenizer: copies share state and a 1,000-word prompt is fast", "[unit][tokenizer]") {
  const auto fresh = sd::CLIPTokenizer::from_folder(golden::dir() / "tokenizer");
  const sd::CLIPTokenizer copy = fresh;  // NOLINT: the copy is the point
  const char* words[] = {"astronaut", "riding", "horse", "mars", "cinematic", "lighting", "highly", "detailed",
                         "masterpiece", "café", "naïve", "日本", "résumé", "artstation", "8k", "photorealistic"};
  std::string prompt;
  for (int i = 0; i < 1000; ++i) prompt += std::string(words[(i * 7) % 16]) + std::to_string(i % 37) + " ";
  const auto start = std::chrono::steady_clock::now();
  const sd::TokenizedPrompt encoded = copy.encode(prompt);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  INFO("1,000-word prompt: " << encoded.num_tokens << " tokens in " << seconds * 1e3 << " ms");
  CHECK(encoded.num_tokens > 1000);
  CHECK(encoded.num_truncated == encoded.num_tokens - 75);
  CHECK(seconds < 0.25);
  CHECK(fresh.encode(prompt).ids == encoded.ids);
  WARN("1,000-word prompt: " << encoded.num_tokens << " tokens in " << seconds * 1e3 << " ms");
}

TEST_CASE("tokenizer: for_model finds the tokenizer where Pipeline::load does", "[unit][tokenizer]") {
  namespace fs = std::filesystem;
  const std::string prompt = "a photo of an astronaut riding a horse";
  const fs::path tiny = golden::dir() / "pipelines/sd1_tiny";
  // A diffusers folder: its own tokenizer/.
  CHECK(sd::CLIPTokenizer::for_model(tiny.string()).encode(prompt).ids ==
        sd::CLIPTokenizer::from_folder(tiny / "tokenizer").encode(prompt).ids);
  // A folder that is a tokenizer itself.
  CHECK(sd::CLIPTokenizer::for_model((tiny / "tokenizer").string()).encode(prompt).ids ==
        sd::CLIPTokenizer::from_folder(tiny / "tokenizer").encode(prompt).ids);
  // random:sd-v1-5 is the bundled SD 1.5 tokenizer, random:PATH that folder's.
  CHECK(sd::CLIPTokenizer::for_model("random:sd-v1-5").encode(prompt).ids ==
        sd::CLIPTokenizer::from_folder(fs::path(LIBSD_SOURCE_DIR) / "weights/sd-v1-5/tokenizer").encode(prompt).ids);
  CHECK(sd::CLIPTokenizer::for_model("random:" + tiny.string()).max_length() ==
        sd::CLIPTokenizer::from_folder(tiny / "tokenizer").max_length());
  // A single file takes its config folder's tokenizer.
  CHECK(sd::CLIPTokenizer::for_model((tiny / "unet/config.json").string(), tiny).encode(prompt).ids ==
        sd::CLIPTokenizer::from_folder(tiny / "tokenizer").encode(prompt).ids);
  CHECK_THROWS_WITH(sd::CLIPTokenizer::for_model("/no/such/model.safetensors"),
                    Catch::Contains("/no/such/model.safetensors") && Catch::Contains("no such file"));
}
