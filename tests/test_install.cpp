// `cmake --install` + a separate project with find_package(libsd) and sd::sd builds and runs.
#include <catch2/catch.hpp>
#include <torch/version.h>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

namespace {
int run(const std::string& command) {
  std::printf("  $ %s\n", command.c_str());
  return std::system(command.c_str());
}
}  // namespace

TEST_CASE("An installed libsd is usable from another CMake project", "[install]") {
  namespace fs = std::filesystem;
  const fs::path tmp = fs::temp_directory_path() / ("libsd-install-" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  const std::string log = (tmp / "log.txt").string();
  REQUIRE(run("cmake --install '" LIBSD_BINARY_DIR "' --prefix '" + (tmp / "prefix").string() + "' > '" + log +
              "' 2>&1") == 0);
  CHECK(fs::exists(tmp / "prefix/include/sd/sd.h"));
  CHECK(fs::exists(tmp / "prefix/share/libsd/sd-v1-5/unet/config.json"));
  REQUIRE(run("cmake -S '" LIBSD_SOURCE_DIR "/tests/consumer' -B '" + (tmp / "build").string() +
              "' -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH='" + (tmp / "prefix").string() + "' >> '" + log +
              "' 2>&1") == 0);
  REQUIRE(run("cmake --build '" + (tmp / "build").string() + "' >> '" + log + "' 2>&1") == 0);
  const std::string out = (tmp / "out.txt").string();
  REQUIRE(run("LIBSD_WEIGHTS_DIR='" + (tmp / "prefix/share/libsd").string() + "' '" +
              (tmp / "build/consumer").string() + "' '" + (tmp / "t.safetensors").string() + "' > '" + out + "'") == 0);
  std::ifstream in(out);
  std::stringstream text;
  text << in.rdbuf();
  INFO(text.str());
  CHECK(text.str().find("tokens=77 first=320 timesteps=10 precision=bf16") != std::string::npos);
  CHECK(text.str().find("caught sd::Error: ") != std::string::npos);
  // The installed libsd and the consumer run on the LibTorch libsd was built with (a Debian 1.13
  // beside a PyTorch 2.x must not be mixed in: libsdConfig.cmake and the install run path see to it).
  CHECK(text.str().find("LibTorch " TORCH_VERSION) != std::string::npos);
  fs::remove_all(tmp);
}
