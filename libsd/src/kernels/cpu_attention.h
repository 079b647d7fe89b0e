#pragma once
// Fused (flash-style) attention on the CPU: softmax(q k^T * scale) v without materializing the
// Nq x Nk score matrix. Blocks of queries x blocks of keys, an online softmax (running max and sum
// per query row), fp32 accumulation, AVX-512 / AVX512-BF16 kernels picked at run time and a
// portable fallback for other CPUs.
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace sd::kernels {

// q: [B, Nq, D], k, v: [B, Nk, D] (B = batch * heads), all float32 or all bfloat16, on the CPU.
// Any strides are accepted (a non-unit stride in the last dimension costs a copy). Nk >= 1.
// Returns softmax(q k^T * scale) v as a contiguous [B, Nq, D] tensor in q's dtype; scores,
// softmax and the weighted sum accumulate in fp32 (bf16 inputs: the probabilities are rounded
// to bf16 before the product with v, as in a bf16 matmul). Throws sd::Error on bad input.
at::Tensor cpu_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale);

// True when cpu_attention accepts these tensors: CPU, strided, 3-D, the same float32/bfloat16
// dtype, matching B and D, k and v with the same Nk >= 1.
bool cpu_attention_supported(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

// Which instruction set the kernel uses. kAuto picks the best this CPU supports; the others
// exist for tests and benchmarks (asking for one the CPU lacks throws sd::Error).
enum class AttentionIsa {
  kAuto,
  kGeneric,     // portable C++ (auto-vectorized), fp32 inside
  kAvx512,      // AVX-512F fp32 FMAs (bf16 inputs are widened to fp32 first)
  kAvx512Bf16,  // AVX512-BF16 dot products for bf16 inputs (fp32 inputs use kAvx512)
};

struct AttentionOptions {
  AttentionIsa isa = AttentionIsa::kAuto;
  int64_t query_block = 0;  // rows of queries per task; 0 = automatic
  int64_t key_block = 0;    // keys per online-softmax step; 0 = automatic
};

at::Tensor cpu_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                         const AttentionOptions& options);

// Whether this CPU (and OS) can run the instruction set; kAuto and kGeneric are always true.
bool cpu_attention_isa_available(AttentionIsa isa);
// The instruction set kAuto resolves to for this dtype on this CPU.
AttentionIsa cpu_attention_best_isa(at::ScalarType dtype);
const char* attention_isa_name(AttentionIsa isa);

}  // namespace sd::kernels
