#pragma once
// An image as PNG bytes in memory, for HTTP answers (sd::write_png writes files).
#include <string>

#include "sd/image.h"

namespace sd_serve {

std::string encode_png(const sd::Image& image);

}  // namespace sd_serve
