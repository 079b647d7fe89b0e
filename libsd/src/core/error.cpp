#include "sd/error.h"

namespace sd {

// The key function: sd::Error's vtable and typeinfo live in libsd, exported (sd/export.h).
Error::~Error() = default;

OutOfMemoryError::OutOfMemoryError(const std::string& message, int64_t requested_bytes, int64_t free_bytes)
    : Error(message), requested_bytes_(requested_bytes), free_bytes_(free_bytes) {}
OutOfMemoryError::~OutOfMemoryError() = default;

}  // namespace sd
