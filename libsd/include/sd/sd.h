#pragma once
// libsd: Stable Diffusion inference on LibTorch. The umbrella header: #include <sd/sd.h>
#include "sd/atomic_file.h"
#include "sd/build_info.h"
#include "sd/error.h"
#include "sd/image.h"
#include "sd/log.h"
#include "sd/pipeline.h"
#include "sd/precision.h"
#include "sd/safetensors.h"
#include "sd/scheduler.h"
#include "sd/tokenizer.h"
