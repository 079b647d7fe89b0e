#pragma once
// Numeric precision of a pipeline: one enum plus an autocast switch. Latents and scheduler math
// always stay fp32; these choose how the models compute.
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <string>
#include <string_view>

#include "sd/export.h"

namespace sd {

enum class Precision {
  kFP32,  // fp32 weights and math
  kTF32,  // fp32 weights; CUDA matmuls/convolutions in TF32 (identical to fp32 on CPU)
  kFP16,  // fp16 weights and math
  kBF16,  // bf16 weights and math (fast on CPUs with AMX / AVX512-BF16)
};

// "fp32", "tf32", "fp16", "bf16"; sd::Error otherwise.
SD_API Precision precision_from_name(std::string_view name);
SD_API std::string precision_name(Precision precision);
// The dtype the weights are stored in for `precision` (autocast keeps fp32 weights).
SD_API c10::ScalarType weight_dtype(Precision precision, bool autocast);
// The dtype autocast computes in on `device`: fp16 on CUDA, bf16 on CPU.
SD_API c10::ScalarType autocast_dtype(const c10::Device& device);

// Sets the thread-local autocast state (and, for a CUDA device only, LibTorch's process-wide TF32
// flags) for one pipeline call, and restores what was there before on destruction.
class SD_API PrecisionScope {
 public:
  PrecisionScope(Precision precision, bool autocast, const c10::Device& device);
  ~PrecisionScope();
  PrecisionScope(const PrecisionScope&) = delete;
  PrecisionScope& operator=(const PrecisionScope&) = delete;

 private:
  bool saved_tf32_cublas_ = false, saved_tf32_cudnn_ = false;
  bool changed_tf32_ = false;
  bool saved_autocast_cuda_, saved_autocast_cpu_;
  c10::ScalarType saved_cuda_dtype_, saved_cpu_dtype_;
  bool changed_autocast_ = false;
};

}  // namespace sd
