#pragma once
// The contract between the attention driver (validation, packing, threads) and the per-ISA
// kernels: one task = one block of query rows of one (batch*head), run over every key block.
#include <cstdint>

#include "kernels/cpu_features.h"

namespace sd::kernels::detail {

// Packed layouts (made by the driver, read by the kernels). nb16 = key_block rounded up to 16.
//  fp32 kernels: K^T panels, one per key block: [D][nb16] floats, zero padded; V is read in place.
//  bf16 kernels: K^T panels over d-pairs: [ceil(D/2)][nb16][2] bf16, zero padded (one vdpbf16ps
//                lane multiplies the pair (k[j][2p], k[j][2p+1]) by (q[i][2p], q[i][2p+1]));
//                V over key pairs: [ceil(Nk/2)][D][2] bf16, lane d holds (v[2p][d], v[2p+1][d]).
struct AttentionTask {
  int64_t rows = 0;        // query rows in this task (<= query block)
  int64_t nk = 0;          // keys
  int64_t d = 0;           // head dim
  int64_t key_block = 0;   // keys per step (even)
  int64_t nb16 = 0;        // key_block rounded up to 16: row length of score and K^T panel rows
  float scale = 1.f;

  const void* q = nullptr;  // first query row (float or bf16 bits)
  int64_t q_row_stride = 0; // elements
  const void* kt = nullptr; // this batch's packed K^T panels
  int64_t kt_panel_stride = 0;  // elements between consecutive key-block panels
  const void* v = nullptr;  // fp32: first key row of V; bf16: this batch's packed V pairs
  int64_t v_row_stride = 0; // fp32: elements between keys; bf16: elements between key pairs (2*D)
  void* out = nullptr;      // first output row (float or bf16 bits), rows of length d, contiguous
  int64_t out_row_stride = 0;

  // Per-thread scratch, sized by the driver (see scratch_floats()).
  float* s = nullptr;        // [query block][nb16] scores / probabilities
  float* o = nullptr;        // [query block][do16] running output
  int64_t o_row_stride = 0;  // do16: d rounded up to 16
  float* row_max = nullptr;  // [query block]
  float* row_sum = nullptr;  // [query block]
  uint16_t* p16 = nullptr;   // bf16 kernels: [query block][nb16] probabilities as bf16
  uint16_t* q16 = nullptr;   // bf16 kernels: [query block][d rounded up to 2] queries, zero padded
};

using AttentionTaskFn = void (*)(const AttentionTask& task);

// Kernels. The AVX-512 ones are compiled with GCC target attributes and must only be called when
// cpu_attention_isa_available() says so.
void attention_task_fp32_generic(const AttentionTask& task);
void attention_task_fp32_avx512(const AttentionTask& task);
void attention_task_bf16_avx512(const AttentionTask& task);

// The softmax's vectorized exp, exposed so that tests can measure its error.
void exp_avx512(const float* x, float* y, int64_t n);

}  // namespace sd::kernels::detail
