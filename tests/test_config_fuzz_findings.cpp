// What fuzz_configs found in the config readers, kept refused: each seed in
// tests/fuzz/corpus/configs/ that once crashed or lied gives one sd::Error naming the field.
#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "core/json_config.h"
#include "models/configs.h"
#include "sd/error.h"

namespace {

std::filesystem::path seed(const std::string& name) {
  return std::filesystem::path(LIBSD_SOURCE_DIR) / "tests/fuzz/corpus/configs" / name;
}

template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const sd::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("config readers refuse what fuzz_configs found, naming the field", "[unit][config][fuzz]") {
  // Not an object: it used to load every default silently.
  CHECK_THAT(error_of([] { sd::UNetConfig::from_file(seed("not_an_object.json")); }),
             Catch::Contains("expected a JSON object"));
  CHECK_THAT(error_of([] { sd::VAEConfig::from_file(seed("not_an_object.json")); }),
             Catch::Contains("expected a JSON object"));
  CHECK_THAT(error_of([] { sd::CLIPTextConfig::from_file(seed("not_an_object.json")); }),
             Catch::Contains("expected a JSON object"));
  // A float beyond int64 in an integer field: it used to be cast (undefined behaviour).
  CHECK_THAT(error_of([] { sd::UNetConfig::from_file(seed("float_for_int.json")); }),
             Catch::Contains("has the wrong type") && Catch::Contains("an integer"));
  // norm_num_groups 0 divided by zero; INT64_MIN channels with -1 groups overflowed the division.
  CHECK_THAT(error_of([] { sd::UNetConfig::from_file(seed("norm_groups_zero.json")); }),
             Catch::Contains("norm_num_groups"));
  CHECK_THAT(error_of([] { sd::VAEConfig::from_file(seed("norm_groups_zero.json")); }),
             Catch::Contains("norm_num_groups"));
  CHECK_FALSE(error_of([] { sd::UNetConfig::from_file(seed("int64_min_channels.json")); }).empty());
  CHECK_FALSE(error_of([] { sd::VAEConfig::from_file(seed("int64_min_channels.json")); }).empty());
  // 70 VAE blocks: the downscale factor 1 << 69 overflowed.
  CHECK_THAT(error_of([] { sd::VAEConfig::from_file(seed("vae_70_blocks.json")); }),
             Catch::Contains("block_out_channels") && Catch::Contains("expected 1 to 8"));
  // Integer fields are typed strictly, as diffusers' modules need them (a float channel count fails
  // there too): even an integral float is refused, naming the field; the real configs still load.
  CHECK_THAT(error_of([] {
               sd::UNetConfig::from_json(sd::JsonConfig(nlohmann::json::parse(R"({"layers_per_block": 2.0})"), "inline"));
             }),
             Catch::Contains("'layers_per_block' has the wrong type"));
  CHECK_NOTHROW(sd::UNetConfig::from_file(seed("unet_sd15.json")));
  CHECK_NOTHROW(sd::VAEConfig::from_file(seed("vae_tiny.json")));
  CHECK_NOTHROW(sd::CLIPTextConfig::from_file(seed("text_encoder_tiny.json")));
}
