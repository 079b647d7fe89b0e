#pragma once
// Where the time of a generation goes, per LibTorch operator: a RecordFunction observer on the
// calling thread that sums each operator's total and self time (total minus the operators it
// called). LibTorch's own profiler needs Kineto or writes only Chrome traces on some builds;
// this observer works the same on LibTorch 1.13 and 2.x, on every build.
//
// Time is attributed to the stage it ran in: libsd marks its stages with user scopes
// ("sd::text_encoder", "sd::unet", "sd::vae_decode") and its own kernels likewise
// ("sd::fused_attention"), so they appear as operators too.
#include <cstdint>
#include <string>
#include <vector>

namespace sd_bench {

struct OpTime {
  std::string stage;  // the outermost "sd::" scope the operator ran in, "" outside any
  std::string op;     // "aten::convolution", "sd::fused_attention", ...
  int64_t calls = 0;
  double self_s = 0;   // time inside this operator minus the operators it called
  double total_s = 0;  // time inside this operator; nested calls of the same name count once
};

// Records operators run on the constructing thread until stop() or destruction. One at a time.
class OpProfiler {
 public:
  OpProfiler();
  ~OpProfiler();
  OpProfiler(const OpProfiler&) = delete;
  OpProfiler& operator=(const OpProfiler&) = delete;

  // Stops recording; rows sorted by self time, largest first.
  std::vector<OpTime> stop();

 private:
  uint64_t handle_ = 0;
  bool running_ = false;
};

}  // namespace sd_bench
