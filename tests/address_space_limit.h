#pragma once
// A real allocator failure, made cheaply: while alive, the process's address space is limited to
// what it maps now plus `extra_bytes`, so a large allocation fails at once (no swapping, no OOM
// killer). AddressSanitizer aborts on a failed allocation instead: such tests start with
// SD_SKIP_IF_FAILED_ALLOCATIONS_ABORT().
#include <sys/resource.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <fstream>
#include <string>

#include "skip.h"

#if defined(__SANITIZE_ADDRESS__)
#define SD_TEST_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SD_TEST_UNDER_ASAN 1
#endif
#endif

#ifdef SD_TEST_UNDER_ASAN
#define SD_SKIP_IF_FAILED_ALLOCATIONS_ABORT() \
  SD_SKIP("AddressSanitizer aborts on a failed allocation instead of returning null (allocator_may_return_null=0)")
#else
#define SD_SKIP_IF_FAILED_ALLOCATIONS_ABORT() \
  do {                                        \
  } while (0)
#endif

namespace sd_test {

class AddressSpaceLimit {
 public:
  explicit AddressSpaceLimit(int64_t extra_bytes) {
    std::ifstream status("/proc/self/status");
    std::string line;
    int64_t vm_kib = 0;
    while (std::getline(status, line)) {
      if (line.rfind("VmSize:", 0) == 0) vm_kib = std::stoll(line.substr(7));
    }
    REQUIRE(vm_kib > 0);
    REQUIRE(getrlimit(RLIMIT_AS, &saved_) == 0);
    rlimit tight = saved_;
    tight.rlim_cur = static_cast<rlim_t>(vm_kib * 1024 + extra_bytes);
    REQUIRE(setrlimit(RLIMIT_AS, &tight) == 0);
  }
  ~AddressSpaceLimit() { setrlimit(RLIMIT_AS, &saved_); }
  AddressSpaceLimit(const AddressSpaceLimit&) = delete;
  AddressSpaceLimit& operator=(const AddressSpaceLimit&) = delete;

 private:
  rlimit saved_{};
};

}  // namespace sd_test
