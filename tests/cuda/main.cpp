// The GPU tests' runner. Without a visible CUDA device every test exits with code 77, which CTest
// reports as skipped (SKIP_RETURN_CODE), never as passed. LIBSD_REQUIRE_CUDA=1 turns that into a
// failure (the GPU check script sets it: there a missing GPU is an error).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <torch/cuda.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

bool listing_only(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--list", 6) == 0 || std::strcmp(argv[i], "-l") == 0 ||
        std::strcmp(argv[i], "-h") == 0 || std::strcmp(argv[i], "--help") == 0) {
      return true;
    }
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  // Test discovery lists the tests at build time, where there is no GPU either.
  if (!listing_only(argc, argv) && !torch::cuda::is_available()) {
    const char* require = std::getenv("LIBSD_REQUIRE_CUDA");
    if (require != nullptr && std::strcmp(require, "1") == 0) {
      std::fprintf(stderr, "error: LIBSD_REQUIRE_CUDA=1 but no CUDA device is visible\n");
      return 1;
    }
    std::printf("SKIPPED: no CUDA device is visible (torch::cuda::is_available() is false)\n");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
