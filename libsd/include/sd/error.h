#pragma once
// sd::Error is the one exception type libsd throws for bad input (files, configs, arguments).
// LibTorch's c10::Error passes through unchanged; both derive from std::exception.
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
