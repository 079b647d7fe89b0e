#pragma once
// Byte-level BPE as in CLIP: a word's UTF-8 bytes map to printable stand-in characters, the last
// one gets "</w>", and the lowest-ranked adjacent pair is merged until no ranked pair remains.
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sd::tokenizer {

// GPT-2/CLIP's bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the other 68
// bytes for U+0100 onwards. Returns the stand-in of `byte` as UTF-8.
const std::string& byte_stand_in(uint8_t byte);

class BpeModel {
 public:
  // vocab.json (token -> id) and merges.txt (a header line, then "first second" per rank).
  BpeModel(const std::filesystem::path& vocab_file, const std::filesystem::path& merges_file);

  // The ids of one pre-tokenized word given as raw UTF-8 bytes. Special tokens spelled exactly
  // ("<|startoftext|>", "<|endoftext|>") are looked up whole, as the reference's cache seeds them.
  // Pieces missing from the vocabulary become `unk_id`.
  void encode_word(std::string_view word, int64_t unk_id, std::vector<int64_t>& out) const;

  // -1 when absent.
  int64_t token_id(const std::string& token) const;
  const std::string* token_of(int64_t id) const;
  size_t vocab_size() const { return vocab_.size(); }

 private:
  std::vector<std::string> merge_word(const std::string& encoded) const;

  std::unordered_map<std::string, int64_t> vocab_;
  std::unordered_map<int64_t, std::string> id_to_token_;
  std::unordered_map<std::string, int> ranks_;  // key: first + '\n' + second

  // Words recur constantly in prompts; the reference caches their ids too.
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache_;  // -1: not in the vocabulary
};

}  // namespace sd::tokenizer
