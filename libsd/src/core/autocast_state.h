#pragma once
// LibTorch's thread-local autocast state, one spelling across releases (the C++ API was renamed
// in 2.4). Implemented in precision.cpp; everything that reads or sets autocast goes through here.
#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

namespace sd {

bool autocast_enabled(c10::DeviceType type);
void set_autocast(c10::DeviceType type, bool on);
c10::ScalarType get_autocast_dtype(c10::DeviceType type);
void set_autocast_dtype(c10::DeviceType type, c10::ScalarType dtype);

}  // namespace sd
