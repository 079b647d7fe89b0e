#include <torch/torch.h>

#include <catch2/catch.hpp>

#include "golden.h"
#include "sd/safetensors.h"

TEST_CASE("safetensors: golden case files open and hold what the manifest says", "[unit][safetensors]") {
  const auto& c = golden::find_case("modules/sd1_tiny/unet_b1_t981");
  sd::SafetensorsFile file(golden::dir() / "modules/sd1_tiny/unet_b1_t981.safetensors");
  for (auto it = c["tensors"].begin(); it != c["tensors"].end(); ++it) {
    INFO(it.key());
    REQUIRE(file.contains(it.key()));
    CHECK(file.get(it.key()).sizes().vec() == it.value()["shape"].get<std::vector<int64_t>>());
    CHECK(sd::safetensors_dtype_name(file.entry(it.key()).dtype) == it.value()["dtype"].get<std::string>());
  }
}
