#include "pipeline/execution_scope.h"

#include <ATen/Parallel.h>

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define LIBSD_HAVE_MXCSR 1
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#include "models/attention.h"

namespace sd {
namespace {

#ifdef LIBSD_HAVE_MXCSR
constexpr unsigned kFlushToZero = 0x8000;      // FTZ: results below the normal range become 0
constexpr unsigned kDenormalsAreZero = 0x0040;  // DAZ: denormal inputs are read as 0
unsigned read_csr() { return _mm_getcsr(); }
void write_csr(unsigned csr) { _mm_setcsr(csr); }
#endif

// Runs fn(i) on the calling thread (i = 0) and on each thread of its OpenMP team (i = 1 + index),
// once each. The team is the one at::parallel_for uses for this thread at its current thread count.
template <class Fn>
void on_every_thread(Fn&& fn) {
  fn(0);
#ifdef _OPENMP
#pragma omp parallel
  { fn(1 + omp_get_thread_num()); }
#endif
}

// The settings of the scope active on this thread, if any (nested calls of one pipeline).
thread_local const ExecutionSettings* t_active = nullptr;

int team_size() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 0;
#endif
}

}  // namespace

ExecutionScope::ExecutionScope(const ExecutionSettings& settings) : outer_(t_active) {
  if (t_active == &settings) {
    nested_ = true;
    return;
  }
  t_active = &settings;
  // LibTorch initializes a thread's thread count lazily, from a process-wide value, at its first
  // parallel call; let that happen now, before our setting, not in the middle of this call.
  saved_threads_ = at::get_num_threads();
  if (settings.threads > 0 && settings.threads != saved_threads_) {
#ifdef _OPENMP
    omp_set_num_threads(settings.threads);
#else
    at::set_num_threads(settings.threads);  // LibTorch's own thread pool: process-wide
#endif
    changed_threads_ = true;
  }
  saved_slice_ = attention_query_slice();
  set_attention_query_slice(settings.attention_slice);
#ifdef LIBSD_HAVE_MXCSR
  if (settings.flush_denormals) {
    saved_csr_.assign(1 + team_size(), 0);
    on_every_thread([this](int i) {
      const unsigned csr = read_csr();
      if (i < static_cast<int>(saved_csr_.size())) saved_csr_[i] = csr;
      write_csr(csr | kFlushToZero | kDenormalsAreZero);
    });
    changed_denormals_ = true;
  }
#endif
}

ExecutionScope::~ExecutionScope() {
  if (nested_) return;
  t_active = outer_;
#ifdef LIBSD_HAVE_MXCSR
  if (changed_denormals_) {
    on_every_thread([this](int i) {
      if (i < static_cast<int>(saved_csr_.size())) write_csr(saved_csr_[i]);
    });
  }
#endif
  set_attention_query_slice(saved_slice_);
  if (changed_threads_) {
#ifdef _OPENMP
    omp_set_num_threads(saved_threads_);
#else
    at::set_num_threads(saved_threads_);
#endif
  }
}

}  // namespace sd
