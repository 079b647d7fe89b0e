#pragma once
// libsd: Stable Diffusion inference on LibTorch. The umbrella header.
#include "sd/atomic_file.h"
#include "sd/error.h"
#include "sd/log.h"
#include "sd/safetensors.h"
