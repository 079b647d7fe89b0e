#pragma once
// Run-time CPU feature detection for the kernels' instruction sets (cpu_features.cpp).
namespace sd::kernels::detail {

bool cpu_has_avx512();       // F + BW + VL + DQ, with OS support for the zmm state
bool cpu_has_avx512_bf16();  // the above + AVX512-BF16

}  // namespace sd::kernels::detail
