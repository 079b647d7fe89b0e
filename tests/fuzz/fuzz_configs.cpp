// libFuzzer target for the config readers: any byte string as each of a model's config files
// (text_encoder/config.json, unet/config.json, vae/config.json, scheduler/scheduler_config.json).
// Each reader must either return a config that keeps the promises the model builders rely on, or
// throw sd::Error. Anything else (nlohmann's own exceptions, a sanitizer report such as a float to
// int conversion out of range or a division by zero, an abort() from a broken promise) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "core/json_config.h"
#include "models/configs.h"
#include "sd/error.h"
#include "sd/scheduler.h"

namespace {

void check(const sd::CLIPTextConfig& c) {
  if (c.hidden_size <= 0 || c.num_attention_heads <= 0 || c.hidden_size % c.num_attention_heads != 0) std::abort();
}

void check(const sd::UNetConfig& c) {
  const size_t n = c.block_out_channels.size();
  if (n == 0 || c.down_block_types.size() != n || c.up_block_types.size() != n || c.num_heads.size() != n ||
      c.transformer_layers_per_block.size() != n)
    std::abort();
  for (size_t i = 0; i < n; ++i) {
    if (c.num_heads[i] <= 0 || c.block_out_channels[i] % c.num_heads[i] != 0) std::abort();
    (void)c.down_has_attention(i);
    (void)c.up_has_attention(i);
  }
}

void check(const sd::VAEConfig& c) {
  if (c.block_out_channels.empty()) std::abort();
  (void)c.downscale_factor();  // a shift by the number of blocks: UBSan reports one that overflows
}

void check(const sd::SchedulerConfig& c) {
  if (c.num_train_timesteps < 2) std::abort();
  if (!c.trained_betas.empty() && static_cast<int>(c.trained_betas.size()) != c.num_train_timesteps) std::abort();
}

template <class Config>
void read_as(const nlohmann::json& json, const char* origin) {
  try {
    const Config config = Config::from_json(sd::JsonConfig(json, origin));
    if (!json.is_object()) std::abort();  // only a JSON object is a config
    check(config);
  } catch (const sd::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  // The scheduler reader parses the text itself (it accepts Python's NaN/Infinity tokens).
  try {
    check(sd::SchedulerConfig::from_json_text(text, "fuzz/scheduler_config.json"));
  } catch (const sd::Error&) {
  }
  // The model configs are parsed by read_json_file (nlohmann, strict JSON), then read field by field.
  const nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return 0;
  read_as<sd::CLIPTextConfig>(json, "fuzz/text_encoder/config.json");
  read_as<sd::UNetConfig>(json, "fuzz/unet/config.json");
  read_as<sd::VAEConfig>(json, "fuzz/vae/config.json");
  return 0;
}
