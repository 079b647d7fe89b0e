#pragma once
// The per-call settings of one pipeline, applied on the calling thread for the duration of a
// public call (generate, encode_prompt, predict_noise, decode) and restored afterwards, so that
// pipelines with different settings, loaded in any order and used from different threads, never
// change each other's results:
//   - the CPU thread count: OpenMP's per-thread "nthreads" setting, which at::parallel_for and
//     OpenBLAS read at each call (not at::set_num_threads, which also changes process-wide state);
//   - the attention query slice (thread-local in models/attention.cpp);
//   - flushing denormals (FTZ/DAZ, a per-thread CPU register): on the calling thread and on each
//     thread of its OpenMP team, where the kernels run.
// What stays process-wide is said in pipeline.h (LoadOptions). A scope opened inside another one
// with the same settings (generate() calling predict_noise() at every step) does nothing: the
// outer one already applied them, and the denoising loop pays nothing per step.
#include <cstdint>
#include <vector>

namespace sd {

struct ExecutionSettings {
  int threads = 0;              // > 0: OpenMP threads for this call; 0: leave as it is
  int64_t attention_slice = 0;  // rows per attention query slice, 0 = none
  bool flush_denormals = true;
};

class ExecutionScope {
 public:
  explicit ExecutionScope(const ExecutionSettings& settings);
  ~ExecutionScope();
  ExecutionScope(const ExecutionScope&) = delete;
  ExecutionScope& operator=(const ExecutionScope&) = delete;

 private:
  const ExecutionSettings* outer_ = nullptr;  // the scope active on this thread before this one
  bool nested_ = false;                       // inside a scope with these very settings: no-op
  int saved_threads_ = 0;
  bool changed_threads_ = false;
  int64_t saved_slice_ = 0;
  bool changed_denormals_ = false;
  std::vector<unsigned> saved_csr_;  // MXCSR of the calling thread [0] and its OpenMP team [1..]
};

}  // namespace sd
