#pragma once
// One spelling for "this LibTorch is at least major.minor", for the calls whose API changed
// between releases (the minor alone is wrong across a major: 3.0 is newer than 2.4).
#include <torch/version.h>

#define SD_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))
