// The only place that touches TF32 flags and autocast state; the autocast C++ API changed
// across LibTorch releases, so its version checks live here too.
#include "sd/precision.h"

#include <ATen/autocast_mode.h>
#include <ATen/Context.h>
#include "core/autocast_state.h"
#include "core/torch_version.h"
#include "sd/error.h"

namespace sd {

#if SD_TORCH_AT_LEAST(2, 4)
bool autocast_enabled(c10::DeviceType type) { return at::autocast::is_autocast_enabled(type); }
void set_autocast(c10::DeviceType type, bool on) { at::autocast::set_autocast_enabled(type, on); }
c10::ScalarType get_autocast_dtype(c10::DeviceType type) { return at::autocast::get_autocast_dtype(type); }
void set_autocast_dtype(c10::DeviceType type, c10::ScalarType dtype) { at::autocast::set_autocast_dtype(type, dtype); }
#else
bool autocast_enabled(c10::DeviceType type) {
  return type == c10::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
}
void set_autocast(c10::DeviceType type, bool on) {
  if (type == c10::kCUDA) at::autocast::set_enabled(on);
  else at::autocast::set_cpu_enabled(on);
}
c10::ScalarType get_autocast_dtype(c10::DeviceType type) {
  return type == c10::kCUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
}
void set_autocast_dtype(c10::DeviceType type, c10::ScalarType dtype) {
  if (type == c10::kCUDA) at::autocast::set_autocast_gpu_dtype(dtype);
  else at::autocast::set_autocast_cpu_dtype(dtype);
}
#endif

Precision precision_from_name(std::string_view name) {
  if (name == "fp32") return Precision::kFP32;
  if (name == "tf32") return Precision::kTF32;
  if (name == "fp16") return Precision::kFP16;
  if (name == "bf16") return Precision::kBF16;
  SD_FAIL("unknown precision '", name, "' (expected fp32, tf32, fp16 or bf16)");
}

std::string precision_name(Precision precision) {
  switch (precision) {
    case Precision::kFP32: return "fp32";
    case Precision::kTF32: return "tf32";
    case Precision::kFP16: return "fp16";
    case Precision::kBF16: return "bf16";
  }
  return "?";
}

c10::ScalarType weight_dtype(Precision precision, bool autocast) {
  if (autocast) return c10::kFloat;
  switch (precision) {
    case Precision::kFP16: return c10::kHalf;
    case Precision::kBF16: return c10::kBFloat16;
    default: return c10::kFloat;
  }
}

c10::ScalarType autocast_dtype(const c10::Device& device) {
  return device.is_cuda() ? c10::kHalf : c10::kBFloat16;
}

PrecisionScope::PrecisionScope(Precision precision, bool autocast, const c10::Device& device) {
  auto& ctx = at::globalContext();
  // TF32 is a process-wide LibTorch flag that only CUDA reads: a CPU pipeline leaves it alone, so
  // it cannot change a CUDA pipeline's results in another thread (pipeline.h says what remains).
  if (device.is_cuda()) {
    saved_tf32_cublas_ = ctx.allowTF32CuBLAS();
    saved_tf32_cudnn_ = ctx.allowTF32CuDNN();
    const bool tf32 = precision == Precision::kTF32;
    ctx.setAllowTF32CuBLAS(tf32);
    ctx.setAllowTF32CuDNN(tf32);
    changed_tf32_ = true;
  }
  saved_autocast_cuda_ = autocast_enabled(c10::kCUDA);
  saved_autocast_cpu_ = autocast_enabled(c10::kCPU);
  saved_cuda_dtype_ = get_autocast_dtype(c10::kCUDA);
  saved_cpu_dtype_ = get_autocast_dtype(c10::kCPU);
  if (autocast) {
    const auto type = device.is_cuda() ? c10::kCUDA : c10::kCPU;
    set_autocast_dtype(type, autocast_dtype(device));
    set_autocast(type, true);
    changed_autocast_ = true;
  }
}

PrecisionScope::~PrecisionScope() {
  if (changed_tf32_) {
    auto& ctx = at::globalContext();
    ctx.setAllowTF32CuBLAS(saved_tf32_cublas_);
    ctx.setAllowTF32CuDNN(saved_tf32_cudnn_);
  }
  if (changed_autocast_) {
    set_autocast(c10::kCUDA, saved_autocast_cuda_);
    set_autocast(c10::kCPU, saved_autocast_cpu_);
    set_autocast_dtype(c10::kCUDA, saved_cuda_dtype_);
    set_autocast_dtype(c10::kCPU, saved_cpu_dtype_);
    at::autocast::clear_cache();
  }
}

}  // namespace sd
