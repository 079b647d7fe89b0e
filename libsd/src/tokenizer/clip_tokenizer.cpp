#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

#include "sd/error.h"
#include "sd/tokenizer.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/text_cleanup.h"
#include "tokenizer/unicode.h"

namespace sd {
namespace {

namespace fs = std::filesystem;

// CLIP's text encoder has 77 positions; transformers uses this when the config names none.
constexpr int kDefaultMaxLength = 77;

std::optional<nlohmann::json> read_optional_json(const fs::path& path) {
  if (!fs::exists(path)) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  SD_CHECK(in.good(), "tokenizer: cannot open ", path.string());
  try {
    nlohmann::json j = nlohmann::json::parse(in);
    SD_CHECK(j.is_object(), "tokenizer: ", path.string(), ": expected a JSON object, got ", j.type_name());
    return j;
  } catch (const nlohmann::json::exception& e) {
    SD_FAIL("tokenizer: ", path.string(), " is not valid JSON: ", e.what());
  }
}

// A special token is written either as a string or as an AddedToken object {"content": ...}.
std::optional<std::string> token_field(const std::optional<nlohmann::json>& config, const char* key,
                                       const fs::path& path) {
  if (!config || !config->contains(key) || (*config)[key].is_null()) return std::nullopt;
  const nlohmann::json& value = (*config)[key];
  if (value.is_string()) return value.get<std::string>();
  SD_CHECK(value.is_object() && value.contains("content") && value["content"].is_string(), "tokenizer: ",
           path.string(), ": field \"", key, "\" must be a string or an object with a string \"content\", got ",
           value.dump());
  return value["content"].get<std::string>();
}

}  // namespace

struct CLIPTokenizer::Impl {
  std::unique_ptr<tokenizer::BpeModel> bpe;
  int64_t bos = 0, eos = 0, pad = 0, unk = 0;
  int max_length = kDefaultMaxLength;
  // Added tokens that split the raw text before any clean-up (transformers' tokens trie).
  std::vector<std::pair<std::u32string, int64_t>> specials;

  void append_ids(std::u32string_view chunk, std::vector<int64_t>& out) const {
    const std::u32string cleaned = tokenizer::clean_text(chunk);
    for (std::u32string_view piece : tokenizer::pre_tokenize(cleaned))
      bpe->encode_word(unicode::encode_utf8(piece), unk, out);
  }
};

CLIPTokenizer::CLIPTokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

CLIPTokenizer CLIPTokenizer::from_folder(const fs::path& dir) {
  SD_CHECK(fs::is_directory(dir), "tokenizer: ", dir.string(), " is not a directory");
  const fs::path vocab_file = dir / "vocab.json", merges_file = dir / "merges.txt";
  SD_CHECK(fs::exists(vocab_file), "tokenizer: missing vocab.json: ", vocab_file.string());
  SD_CHECK(fs::exists(merges_file), "tokenizer: missing merges.txt: ", merges_file.string());
  const fs::path config_file = dir / "tokenizer_config.json", map_file = dir / "special_tokens_map.json";
  const auto config = read_optional_json(config_file);
  const auto special_map = read_optional_json(map_file);

  auto impl = std::make_shared<Impl>();
  impl->bpe = std::make_unique<tokenizer::BpeModel>(vocab_file, merges_file);

  // special_tokens_map.json overrides tokenizer_config.json, as in transformers' from_pretrained.
  auto resolve = [&](const char* key, const char* fallback) -> std::pair<std::string, int64_t> {
    std::optional<std::string> token = token_field(special_map, key, map_file);
    const fs::path* source = &map_file;
    if (!token) token = token_field(config, key, config_file), source = &config_file;
    if (!token) token = fallback, source = &vocab_file;
    const int64_t id = impl->bpe->token_id(*token);
    SD_CHECK(id >= 0, "tokenizer: ", key, " \"", *token, "\" (from ", source->string(), ") is not in ",
             vocab_file.string());
    return {*token, id};
  };
  const auto bos = resolve("bos_token", "<|startoftext|>");
  const auto eos = resolve("eos_token", "<|endoftext|>");
  const auto unk = resolve("unk_token", "<|endoftext|>");
  const auto pad = resolve("pad_token", "<|endoftext|>");
  impl->bos = bos.second, impl->eos = eos.second, impl->unk = unk.second, impl->pad = pad.second;
  for (const auto& [token, id] : {bos, eos, unk, pad}) {
    std::u32string text = unicode::decode_utf8(token, "tokenizer special token");
    const bool seen = std::any_of(impl->specials.begin(), impl->specials.end(),
                                  [&](const auto& s) { return s.first == text; });
    if (!seen && !text.empty()) impl->specials.emplace_back(std::move(text), id);
  }
  // Longest first, so that at one position the longest special token wins.
  std::sort(impl->specials.begin(), impl->specials.end(),
            [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });

  if (config && config->contains("model_max_length")) {
    const nlohmann::json& value = (*config)["model_max_length"];
    SD_CHECK(value.is_number() && value.get<double>() >= 2 && value.get<double>() <= 1e6, "tokenizer: ",
             config_file.string(), ": model_max_length must be a number in [2, 1e6], got ", value.dump());
    impl->max_length = static_cast<int>(value.get<double>());
  }
  return CLIPTokenizer(std::move(impl));
}

std::vector<int64_t> CLIPTokenizer::tokenize_ids(std::string_view text) const {
  const std::u32string decoded = unicode::decode_utf8(text, "prompt");
  const std::u32string_view view(decoded);
  std::vector<int64_t> ids;
  // Split at special tokens written in the raw text (leftmost, then longest); the text between
  // them is cleaned and tokenized on its own.
  size_t chunk_begin = 0;
  for (size_t pos = 0; pos < view.size();) {
    const std::pair<std::u32string, int64_t>* hit = nullptr;
    for (const auto& special : impl_->specials) {
      if (view.substr(pos, special.first.size()) == special.first) {
        hit = &special;
        break;
      }
    }
    if (hit == nullptr) {
      ++pos;
      continue;
    }
    impl_->append_ids(view.substr(chunk_begin, pos - chunk_begin), ids);
    ids.push_back(hit->second);
    pos += hit->first.size();
    chunk_begin = pos;
  }
  impl_->append_ids(view.substr(chunk_begin), ids);
  return ids;
}

TokenizedPrompt CLIPTokenizer::encode(std::string_view prompt) const {
  const std::vector<int64_t> tokens = tokenize_ids(prompt);
  const size_t capacity = static_cast<size_t>(impl_->max_length) - 2;
  const size_t kept = std::min(tokens.size(), capacity);
  TokenizedPrompt out;
  out.num_tokens = static_cast<int>(tokens.size());
  out.num_truncated = static_cast<int>(tokens.size() - kept);
  out.ids.reserve(static_cast<size_t>(impl_->max_length));
  out.ids.push_back(impl_->bos);
  out.ids.insert(out.ids.end(), tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(kept));
  out.ids.push_back(impl_->eos);
  out.ids.resize(static_cast<size_t>(impl_->max_length), impl_->pad);
  return out;
}

std::string CLIPTokenizer::id_to_token(int64_t id) const {
  const std::string* token = impl_->bpe->token_of(id);
  SD_CHECK(token != nullptr, "tokenizer: id ", id, " is not in the vocabulary (", impl_->bpe->vocab_size(),
           " tokens)");
  return *token;
}

int64_t CLIPTokenizer::bos_id() const { return impl_->bos; }
int64_t CLIPTokenizer::eos_id() const { return impl_->eos; }
int64_t CLIPTokenizer::pad_id() const { return impl_->pad; }
int64_t CLIPTokenizer::unk_id() const { return impl_->unk; }
int CLIPTokenizer::max_length() const { return impl_->max_length; }
size_t CLIPTokenizer::vocab_size() const { return impl_->bpe->vocab_size(); }

}  // namespace sd
