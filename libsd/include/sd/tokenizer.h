#pragma once
// CLIP's byte-level BPE tokenizer, token-for-token equal to transformers' slow CLIPTokenizer
// without ftfy (what diffusers' pipelines run): text clean-up, NFC, lower-casing, CLIP's
// pre-tokenizer pattern, byte-level BPE, then BOS/EOS, truncation and padding.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sd/export.h"

namespace sd {

struct TokenizedPrompt {
  std::vector<int64_t> ids;  // exactly max_length: BOS, tokens, EOS, then pad
  int num_tokens = 0;        // tokens before truncation, without BOS/EOS
  int num_truncated = 0;     // tokens dropped by truncation (0 if it fit)
};

// Cheap to copy: copies share the immutable vocabulary, merges and the word cache.
// Thread-safe: the word cache is guarded by a mutex.
class SD_API CLIPTokenizer {
 public:
  // Reads vocab.json and merges.txt, plus the optional tokenizer_config.json and
  // special_tokens_map.json (the latter wins, as in transformers) for the bos/eos/unk/pad tokens
  // and model_max_length (default 77). SD 1.x pads with "<|endoftext|>", SD 2.x with "!".
  // Throws sd::Error naming the file for missing or malformed files.
  static CLIPTokenizer from_folder(const std::filesystem::path& tokenizer_dir);
  // The tokenizer of `model` as Pipeline::load reads it: a diffusers folder's tokenizer/ (or a
  // folder that is a tokenizer itself), "random:sd-v1-5" and single-file checkpoints the bundled SD
  // 1.5 one (a single file's from `config_dir`/tokenizer when given), "random:PATH" PATH/tokenizer.
  static CLIPTokenizer for_model(const std::string& model, const std::filesystem::path& config_dir = {});

  // Like tokenizer(prompt, padding="max_length", max_length=max_length(), truncation=True):
  // BOS + at most max_length - 2 tokens + EOS, padded with the pad id.
  // The prompt must be UTF-8; invalid UTF-8 throws sd::Error giving the byte offset.
  TokenizedPrompt encode(std::string_view prompt) const;
  // The BPE ids of `text`, without BOS/EOS and without truncation. Special tokens written in the
  // text ("<|endoftext|>", and for SD 2.x "!") map to their ids, as in the reference.
  std::vector<int64_t> tokenize_ids(std::string_view text) const;

  // The vocabulary string of an id ("a</w>"); throws sd::Error for an unknown id.
  std::string id_to_token(int64_t id) const;
  int64_t bos_id() const;
  int64_t eos_id() const;
  int64_t pad_id() const;
  int64_t unk_id() const;
  int max_length() const;
  size_t vocab_size() const;

 private:
  struct SD_LOCAL Impl;
  explicit CLIPTokenizer(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

}  // namespace sd
