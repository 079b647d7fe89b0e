// Driver of the fused CPU attention: input checks, instruction-set choice, blocking, packing K
// (and V for bf16) once per call, and at::parallel_for over (batch*head, query block) tasks.
#include "kernels/cpu_attention.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <c10/util/BFloat16.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>

#include "core/log_macros.h"
#include "kernels/cpu_attention_task.h"
#include "sd/error.h"

namespace sd::kernels {
namespace {

// at::parallel_for is a header template: with LibTorch's OpenMP backend (Debian's build) it runs
// in parallel only in code compiled with -fopenmp, and silently on one thread otherwise.
#if AT_PARALLEL_OPENMP && !defined(_OPENMP)
constexpr bool kParallelForIsSerial = true;
#else
constexpr bool kParallelForIsSerial = false;
#endif

void warn_if_serial() {
  if (!kParallelForIsSerial || at::get_num_threads() <= 1) return;
  static std::once_flag once;
  std::call_once(once, [] {
    SD_LOG_WARN("cpu_attention: libsd was compiled without OpenMP while LibTorch uses its OpenMP backend, so "
                "at::parallel_for runs on one thread (build libsd with -fopenmp)");
  });
}

using detail::AttentionTask;

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

std::string describe(const at::Tensor& t) {
  if (!t.defined()) return "undefined";
  std::ostringstream out;
  out << t.sizes() << " " << t.scalar_type() << " on " << t.device();
  return out.str();
}

// Why the inputs are unsupported, or "" when they are fine.
std::string problem_with(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  const at::Tensor* all[] = {&q, &k, &v};
  const char* names[] = {"q", "k", "v"};
  for (int i = 0; i < 3; ++i) {
    const at::Tensor& t = *all[i];
    if (!t.defined()) return std::string(names[i]) + " is undefined";
    if (t.dim() != 3) return std::string(names[i]) + " must be 3-D [B, N, D], got " + describe(t);
    if (!t.device().is_cpu() || t.layout() != at::kStrided)
      return std::string(names[i]) + " must be a strided CPU tensor, got " + describe(t);
    if (t.scalar_type() != at::kFloat && t.scalar_type() != at::kBFloat16)
      return std::string(names[i]) + " must be float32 or bfloat16, got " + describe(t);
  }
  if (k.scalar_type() != q.scalar_type() || v.scalar_type() != q.scalar_type())
    return "q, k and v must share one dtype, got q " + describe(q) + ", k " + describe(k) + ", v " + describe(v);
  if (k.size(0) != q.size(0) || v.size(0) != q.size(0) || k.size(2) != q.size(2) || v.size(2) != q.size(2) ||
      v.size(1) != k.size(1))
    return "expected q [B, Nq, D], k and v [B, Nk, D], got q " + describe(q) + ", k " + describe(k) + ", v " +
           describe(v);
  if (k.size(1) < 1) return "k and v need at least one key, got k " + describe(k);
  return "";
}

// Rows with unit stride in the last dim; only that is required by the packing and the kernels.
at::Tensor unit_last_stride(const at::Tensor& t) { return t.stride(2) == 1 ? t : t.contiguous(); }

struct Blocking {
  int64_t query_block;
  int64_t key_block;  // even, so key pairs never straddle two blocks
};

Blocking choose_blocking(int64_t batch, int64_t nq, int64_t nk, int64_t d, const AttentionOptions& options) {
  Blocking b{};
  // A key block's K^T panel plus its V rows (fp32: 8 bytes per key and d) sized to stay in L2
  // next to the score block; small head dims are capped so the score rows stay short.
  b.key_block = options.key_block > 0 ? options.key_block : std::clamp<int64_t>(32768 / std::max<int64_t>(d, 1), 32, 256);
  b.key_block = std::min(round_up(b.key_block, 2), round_up(nk, 2));
  b.query_block = options.query_block > 0 ? options.query_block : (d > 256 ? 32 : 64);
  // Enough tasks to keep every thread busy when batch*heads is small (cross-attention at 8x8).
  const int64_t threads = at::get_num_threads();
  while (options.query_block <= 0 && b.query_block > 8 && batch * ((nq + b.query_block - 1) / b.query_block) < 4 * threads)
    b.query_block /= 2;
  b.query_block = std::max<int64_t>(1, std::min(b.query_block, nq));
  return b;
}

// Scratch for one thread, 64-byte aligned pieces carved from one allocation.
class Scratch {
 public:
  float* floats(int64_t n) { return static_cast<float*>(take(n * sizeof(float))); }
  uint16_t* halves(int64_t n) { return static_cast<uint16_t*>(take(n * sizeof(uint16_t))); }
  void reserve(size_t bytes) {
    buffer_.reset(new unsigned char[bytes + 64]);
    size_ = bytes + 64;
    used_ = 0;
  }

 private:
  void* take(size_t bytes) {
    auto base = reinterpret_cast<uintptr_t>(buffer_.get());
    uintptr_t p = (base + used_ + 63) & ~uintptr_t{63};
    used_ = p - base + bytes;
    if (used_ > size_) return nullptr;  // reserve() is sized for every take(); never reached
    return reinterpret_cast<void*>(p);
  }
  std::unique_ptr<unsigned char[]> buffer_;
  size_t size_ = 0, used_ = 0;
};

struct Plan {
  int64_t batch, nq, nk, d;
  Blocking blocks;
  int64_t nb16, do16, key_blocks;
  bool bf16_kernel;
};

// Runs every (batch*head, query block) task; `fill` sets the per-batch pointers of a task.
template <class Fill>
void run_tasks(const Plan& plan, detail::AttentionTaskFn kernel, Fill&& fill) {
  const int64_t qb = plan.blocks.query_block;
  const int64_t q_blocks = (plan.nq + qb - 1) / qb;
  const size_t bytes = 64 * 8 + sizeof(float) * (qb * plan.nb16 + qb * plan.do16 + 2 * qb) +
                       (plan.bf16_kernel ? sizeof(uint16_t) * (qb * plan.nb16 + qb * round_up(plan.d, 2)) : 0);
  at::parallel_for(0, plan.batch * q_blocks, 1, [&](int64_t begin, int64_t end) {
    Scratch scratch;
    scratch.reserve(bytes);
    AttentionTask t;
    t.nk = plan.nk;
    t.d = plan.d;
    t.key_block = plan.blocks.key_block;
    t.nb16 = plan.nb16;
    t.o_row_stride = plan.do16;
    t.s = scratch.floats(qb * plan.nb16);
    t.o = scratch.floats(qb * plan.do16);
    t.row_max = scratch.floats(qb);
    t.row_sum = scratch.floats(qb);
    if (plan.bf16_kernel) {
      t.p16 = scratch.halves(qb * plan.nb16);
      t.q16 = scratch.halves(qb * round_up(plan.d, 2));
    }
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / q_blocks, i0 = (task % q_blocks) * qb;
      t.rows = std::min(qb, plan.nq - i0);
      fill(t, b, i0);
      kernel(t);
    }
  });
}

at::Tensor run_fp32(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in, float scale,
                    const Plan& plan, detail::AttentionTaskFn kernel) {
  const at::Tensor q = unit_last_stride(q_in), k = unit_last_stride(k_in), v = unit_last_stride(v_in);
  const int64_t B = plan.batch, nk = plan.nk, d = plan.d, kb = plan.blocks.key_block, nb16 = plan.nb16;
  const int64_t panel = d * nb16;
  // K^T panels, one per key block: the GEMM then broadcasts q and reads 16 keys per vector.
  at::Tensor kt = at::zeros({B * plan.key_blocks * panel}, at::kFloat);
  {
    float* dst = kt.data_ptr<float>();
    const float* src = k.data_ptr<float>();
    const int64_t sb = k.stride(0), sj = k.stride(1);
    at::parallel_for(0, B * plan.key_blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / plan.key_blocks, k0 = (task % plan.key_blocks) * kb;
        float* p = dst + task * panel;
        for (int64_t j = 0; j < std::min(kb, nk - k0); ++j) {
          const float* row = src + b * sb + (k0 + j) * sj;
          for (int64_t c = 0; c < d; ++c) p[c * nb16 + j] = row[c];
        }
      }
    });
  }
  at::Tensor out = at::empty({B, plan.nq, d}, q.options().memory_format(at::MemoryFormat::Contiguous));
  const float* qp = q.data_ptr<float>();
  const float* vp = v.data_ptr<float>();
  const float* ktp = kt.data_ptr<float>();
  float* op = out.data_ptr<float>();
  run_tasks(plan, kernel, [&](AttentionTask& t, int64_t b, int64_t i0) {
    t.scale = scale;
    t.q = qp + b * q.stride(0) + i0 * q.stride(1);
    t.q_row_stride = q.stride(1);
    t.kt = ktp + b * plan.key_blocks * panel;
    t.kt_panel_stride = panel;
    t.v = vp + b * v.stride(0);
    t.v_row_stride = v.stride(1);
    t.out = op + (b * plan.nq + i0) * d;
    t.out_row_stride = d;
  });
  return out;
}

at::Tensor run_bf16(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in, float scale,
                    const Plan& plan) {
  const at::Tensor q = unit_last_stride(q_in), k = unit_last_stride(k_in), v = unit_last_stride(v_in);
  const int64_t B = plan.batch, nk = plan.nk, d = plan.d, kb = plan.blocks.key_block, nb16 = plan.nb16;
  const int64_t d2 = (d + 1) / 2, nk2 = (nk + 1) / 2;
  const int64_t panel = d2 * nb16 * 2;
  static_assert(sizeof(c10::BFloat16) == sizeof(uint16_t), "bf16 is 16 bits");
  // K^T panels over d-pairs and V over key pairs: the layouts vdpbf16ps multiplies lane by lane.
  at::Tensor kt = at::zeros({B * plan.key_blocks * panel}, at::kShort);
  at::Tensor vpk = at::zeros({B * nk2 * 2 * d}, at::kShort);
  {
    uint16_t* kdst = reinterpret_cast<uint16_t*>(kt.data_ptr<int16_t>());
    uint16_t* vdst = reinterpret_cast<uint16_t*>(vpk.data_ptr<int16_t>());
    const auto* ksrc = reinterpret_cast<const uint16_t*>(k.data_ptr<at::BFloat16>());
    const auto* vsrc = reinterpret_cast<const uint16_t*>(v.data_ptr<at::BFloat16>());
    at::parallel_for(0, B * plan.key_blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / plan.key_blocks, k0 = (task % plan.key_blocks) * kb;
        uint16_t* p = kdst + task * panel;
        for (int64_t j = 0; j < std::min(kb, nk - k0); ++j) {
          const int64_t key = k0 + j;
          const uint16_t* krow = ksrc + b * k.stride(0) + key * k.stride(1);
          for (int64_t c = 0; c < d; ++c) p[(c / 2) * nb16 * 2 + j * 2 + (c & 1)] = krow[c];
          const uint16_t* vrow = vsrc + b * v.stride(0) + key * v.stride(1);
          uint16_t* vq = vdst + (b * nk2 + key / 2) * 2 * d + (key & 1);
          for (int64_t c = 0; c < d; ++c) vq[2 * c] = vrow[c];
        }
      }
    });
  }
  at::Tensor out = at::empty({B, plan.nq, d}, q.options().memory_format(at::MemoryFormat::Contiguous));
  const auto* qp = reinterpret_cast<const uint16_t*>(q.data_ptr<at::BFloat16>());
  const auto* ktp = reinterpret_cast<const uint16_t*>(kt.data_ptr<int16_t>());
  const auto* vpp = reinterpret_cast<const uint16_t*>(vpk.data_ptr<int16_t>());
  auto* op = reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>());
  run_tasks(plan, detail::attention_task_bf16_avx512, [&](AttentionTask& t, int64_t b, int64_t i0) {
    t.scale = scale;
    t.q = qp + b * q.stride(0) + i0 * q.stride(1);
    t.q_row_stride = q.stride(1);
    t.kt = ktp + b * plan.key_blocks * panel;
    t.kt_panel_stride = panel;
    t.v = vpp + b * nk2 * 2 * d;
    t.v_row_stride = 2 * d;
    t.out = op + (b * plan.nq + i0) * d;
    t.out_row_stride = d;
  });
  return out;
}

}  // namespace

bool cpu_attention_supported(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  return problem_with(q, k, v).empty();
}

bool cpu_attention_isa_available(AttentionIsa isa) {
  switch (isa) {
    case AttentionIsa::kAuto:
    case AttentionIsa::kGeneric: return true;
    case AttentionIsa::kAvx512: return detail::cpu_has_avx512();
    case AttentionIsa::kAvx512Bf16: return detail::cpu_has_avx512_bf16();
  }
  return false;
}

AttentionIsa cpu_attention_best_isa(at::ScalarType dtype) {
  if (dtype == at::kBFloat16 && detail::cpu_has_avx512_bf16()) return AttentionIsa::kAvx512Bf16;
  if (detail::cpu_has_avx512()) return AttentionIsa::kAvx512;
  return AttentionIsa::kGeneric;
}

const char* attention_isa_name(AttentionIsa isa) {
  switch (isa) {
    case AttentionIsa::kAuto: return "auto";
    case AttentionIsa::kGeneric: return "generic";
    case AttentionIsa::kAvx512: return "avx512";
    case AttentionIsa::kAvx512Bf16: return "avx512-bf16";
  }
  return "?";
}

at::Tensor cpu_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale) {
  return cpu_attention(q, k, v, scale, AttentionOptions{});
}

at::Tensor cpu_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                         const AttentionOptions& options) {
  RECORD_USER_SCOPE("sd::fused_attention");  // not a LibTorch operator: named for profilers
  const std::string problem = problem_with(q, k, v);
  SD_CHECK(problem.empty(), "cpu_attention: ", problem);
  SD_CHECK(std::isfinite(scale), "cpu_attention: scale must be finite, got ", scale);
  const AttentionIsa isa = options.isa == AttentionIsa::kAuto ? cpu_attention_best_isa(q.scalar_type()) : options.isa;
  SD_CHECK(cpu_attention_isa_available(isa), "cpu_attention: instruction set ", attention_isa_name(isa),
           " is not available on this CPU");

  Plan plan{};
  plan.batch = q.size(0);
  plan.nq = q.size(1);
  plan.nk = k.size(1);
  plan.d = q.size(2);
  if (plan.batch == 0 || plan.nq == 0 || plan.d == 0) return at::zeros({plan.batch, plan.nq, plan.d}, q.options());
  warn_if_serial();
  plan.blocks = choose_blocking(plan.batch, plan.nq, plan.nk, plan.d, options);
  plan.nb16 = round_up(plan.blocks.key_block, 16);
  plan.do16 = round_up(plan.d, 16);
  plan.key_blocks = (plan.nk + plan.blocks.key_block - 1) / plan.blocks.key_block;

  const bool bf16_in = q.scalar_type() == at::kBFloat16;
  if (bf16_in && isa == AttentionIsa::kAvx512Bf16) {
    plan.bf16_kernel = true;
    return run_bf16(q, k, v, static_cast<float>(scale), plan);
  }
  const detail::AttentionTaskFn kernel =
      isa == AttentionIsa::kGeneric ? detail::attention_task_fp32_generic : detail::attention_task_fp32_avx512;
  if (bf16_in)  // no bf16 dot products here: widen, run in fp32, round the result once
    return run_fp32(q.to(at::kFloat), k.to(at::kFloat), v.to(at::kFloat), static_cast<float>(scale), plan, kernel)
        .to(at::kBFloat16);
  return run_fp32(q, k, v, static_cast<float>(scale), plan, kernel);
}

}  // namespace sd::kernels
