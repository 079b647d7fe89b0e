#pragma once
// A test that cannot run here (no AVX-512, no GPU) says so instead of passing. Under CTest
// (LIBSD_CTEST=1, set on every registered test) it ends its process with code 77, which CTest
// reports as skipped; run by hand inside a larger Catch2 run it warns and returns.
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace sd_test {

inline bool under_ctest() {
  const char* env = std::getenv("LIBSD_CTEST");
  return env != nullptr && std::string(env) == "1";
}

}  // namespace sd_test

#define SD_SKIP(reason)                                        \
  do {                                                         \
    if (::sd_test::under_ctest()) {                            \
      std::printf("SKIPPED: %s\n", std::string(reason).c_str()); \
      std::fflush(stdout);                                     \
      std::_Exit(77);                                          \
    }                                                          \
    WARN("skipped: " << (reason));                             \
    return;                                                    \
  } while (0)
