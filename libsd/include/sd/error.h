#pragma once
// sd::Error is the one exception type libsd throws for bad input (files, configs, arguments).
// LibTorch's c10::Error passes through unchanged; both derive from std::exception.
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

#include "sd/export.h"

namespace sd {

// Exported with its vtable and typeinfo (anchored in libsd by the out-of-line destructor), so that
// programs catch it by type.
class SD_API Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  Error(const Error&) = default;
  Error& operator=(const Error&) = default;
  ~Error() override;
};

// Running out of memory (CUDA or CPU) during a call: the message is one line that says what the
// call was making and how to lower it; the numbers come from LibTorch's allocator message, -1
// where it did not say. The pipeline stays usable (the CUDA caching allocator has been emptied).
class SD_API OutOfMemoryError : public Error {
 public:
  OutOfMemoryError(const std::string& message, int64_t requested_bytes, int64_t free_bytes);
  OutOfMemoryError(const OutOfMemoryError&) = default;
  OutOfMemoryError& operator=(const OutOfMemoryError&) = default;
  ~OutOfMemoryError() override;
  int64_t requested_bytes() const { return requested_bytes_; }  // the failed allocation's size
  int64_t free_bytes() const { return free_bytes_; }            // free on the device then

 private:
  int64_t requested_bytes_ = -1;
  int64_t free_bytes_ = -1;
};

namespace detail {
template <class... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}
}  // namespace detail

}  // namespace sd

// SD_CHECK(cond, "file ", path, ": expected ", a, ", got ", b): throws sd::Error with the parts joined.
#define SD_CHECK(cond, ...)                                         \
  do {                                                              \
    if (!(cond)) throw ::sd::Error(::sd::detail::concat(__VA_ARGS__)); \
  } while (0)

#define SD_FAIL(...) throw ::sd::Error(::sd::detail::concat(__VA_ARGS__))
