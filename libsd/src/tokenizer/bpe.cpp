#include "tokenizer/bpe.h"

#include <array>
#include <cctype>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sd/error.h"
#include "tokenizer/unicode.h"

namespace sd::tokenizer {
namespace {

constexpr const char* kEndOfWord = "</w>";
// The reference reads merges.txt lines 1 .. 49152 - 256 - 2 (CLIP's 48,894 merges) and no more.
constexpr size_t kMaxMerges = 49152 - 256 - 2;
constexpr size_t kMaxCachedWords = 100000;

std::string read_file(const std::filesystem::path& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  SD_CHECK(in.good(), "tokenizer: cannot open ", what, " ", path.string());
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

}  // namespace

const std::string& byte_stand_in(uint8_t byte) {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      unicode::append_utf8(t[b], printable ? static_cast<char32_t>(b) : next++);
    }
    return t;
  }();
  return table[byte];
}

BpeModel::BpeModel(const std::filesystem::path& vocab_file, const std::filesystem::path& merges_file) {
  const std::string vocab_text = read_file(vocab_file, "vocabulary");
  nlohmann::json vocab;
  try {
    vocab = nlohmann::json::parse(vocab_text);
  } catch (const nlohmann::json::exception& e) {
    SD_FAIL("tokenizer: ", vocab_file.string(), " is not valid JSON: ", e.what());
  }
  SD_CHECK(vocab.is_object() && !vocab.empty(), "tokenizer: ", vocab_file.string(),
           ": expected a non-empty object of token -> id, got ", vocab.type_name());
  vocab_.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    SD_CHECK(it.value().is_number_integer(), "tokenizer: ", vocab_file.string(), ": the id of token \"", it.key(),
             "\" is a ", it.value().type_name(), ", expected an integer");
    const int64_t id = it.value().get<int64_t>();
    vocab_[it.key()] = id;
    id_to_token_[id] = it.key();
  }

  // Like the reference: strip the file, drop the first (header) line, rank the rest by position.
  // Lines that are not exactly two symbols still take a rank; a repeated pair keeps its last rank.
  const std::string merges_text = read_file(merges_file, "merges");
  const size_t first = merges_text.find_first_not_of(" \t\r\n\v\f");
  const size_t header_end = first == std::string::npos ? std::string::npos : merges_text.find('\n', first);
  size_t rank = 0;
  for (size_t pos = header_end; pos != std::string::npos && pos < merges_text.size() && rank < kMaxMerges; ++rank) {
    const size_t line_begin = pos + 1;
    size_t line_end = merges_text.find('\n', line_begin);
    if (line_end == std::string::npos) line_end = merges_text.size();
    // Python's split(): the stand-in characters never include whitespace, so ASCII's is enough.
    const std::string_view line(merges_text.data() + line_begin, line_end - line_begin);
    std::string_view fields[3];
    size_t count = 0;
    for (size_t i = 0; i < line.size() && count < 3;) {
      if (std::isspace(static_cast<unsigned char>(line[i]))) {
        ++i;
        continue;
      }
      size_t j = i;
      while (j < line.size() && !std::isspace(static_cast<unsigned char>(line[j]))) ++j;
      fields[count++] = line.substr(i, j - i);
      i = j;
    }
    if (count == 2) ranks_[std::string(fields[0]) + '\n' + std::string(fields[1])] = static_cast<int>(rank);
    pos = line_end < merges_text.size() ? line_end : std::string::npos;
  }
  SD_CHECK(!ranks_.empty(), "tokenizer: ", merges_file.string(), " holds no merges (expected a header line then \"a b\" lines)");
}

int64_t BpeModel::token_id(const std::string& token) const {
  auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

const std::string* BpeModel::token_of(int64_t id) const {
  auto it = id_to_token_.find(id);
  return it == id_to_token_.end() ? nullptr : &it->second;
}

std::vector<std::string> BpeModel::merge_word(const std::string& word) const {
  // Symbols are the stand-ins of the word's bytes; the last carries the end-of-word mark.
  std::vector<std::string> symbols;
  symbols.reserve(word.size());
  for (unsigned char byte : word) symbols.push_back(byte_stand_in(byte));
  if (symbols.empty()) return symbols;
  symbols.back() += kEndOfWord;

  std::string key;
  while (symbols.size() > 1) {
    int best_rank = std::numeric_limits<int>::max();
    size_t best = 0;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      key.assign(symbols[i]).append(1, '\n').append(symbols[i + 1]);
      auto it = ranks_.find(key);
      if (it != ranks_.end() && it->second < best_rank) {
        best_rank = it->second;
        best = i;
      }
    }
    if (best_rank == std::numeric_limits<int>::max()) break;
    // Merge every non-overlapping occurrence of the best pair, left to right, as the reference does.
    const std::string first = symbols[best], second = symbols[best + 1];
    std::vector<std::string> merged;
    merged.reserve(symbols.size());
    for (size_t i = 0; i < symbols.size();) {
      if (i + 1 < symbols.size() && symbols[i] == first && symbols[i + 1] == second) {
        merged.push_back(first + second);
        i += 2;
      } else {
        merged.push_back(std::move(symbols[i]));
        i += 1;
      }
    }
    symbols = std::move(merged);
  }
  return symbols;
}

void BpeModel::encode_word(std::string_view word, int64_t unk_id, std::vector<int64_t>& out) const {
  const std::string key(word);
  if (key == "<|startoftext|>" || key == "<|endoftext|>") {
    const int64_t id = token_id(key);
    out.push_back(id >= 0 ? id : unk_id);
    return;
  }
  std::vector<int64_t> ids;
  bool cached = false;
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      ids = it->second;
      cached = true;
    }
  }
  if (!cached) {
    for (const std::string& piece : merge_word(key)) ids.push_back(token_id(piece));
    std::lock_guard<std::mutex> lock(cache_mutex_);
    // A long-lived process sees unboundedly many words; start over rather than grow forever.
    if (cache_.size() >= kMaxCachedWords) cache_.clear();
    cache_.emplace(key, ids);
  }
  for (int64_t id : ids) out.push_back(id >= 0 ? id : unk_id);
}

}  // namespace sd::tokenizer
