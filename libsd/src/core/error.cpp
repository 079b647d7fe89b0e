#include "sd/error.h"

namespace sd {

// The key function: sd::Error's vtable and typeinfo live in libsd, exported (sd/export.h).
Error::~Error() = default;

}  // namespace sd
