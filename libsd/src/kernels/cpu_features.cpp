// Run-time CPU feature detection for the kernels' instruction sets.
#include "kernels/cpu_features.h"

#if defined(__GNUC__) && defined(__x86_64__)
#include <cpuid.h>
#endif

namespace sd::kernels::detail {

bool cpu_has_avx512() {
#if defined(__GNUC__) && defined(__x86_64__)
  // libgcc's detection also checks that the OS saves the opmask and zmm registers (XCR0).
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  }();
  return has;
#else
  return false;
#endif
}

bool cpu_has_avx512_bf16() {
#if defined(__GNUC__) && defined(__x86_64__)
  // CPUID leaf 7 sub-leaf 1, EAX bit 5 = AVX512_BF16 (read directly: older compilers'
  // __builtin_cpu_supports does not know the name).
  static const bool has = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!cpu_has_avx512() || !__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) return false;
    return (eax & (1u << 5)) != 0;
  }();
  return has;
#else
  return false;
#endif
}

}  // namespace sd::kernels::detail
