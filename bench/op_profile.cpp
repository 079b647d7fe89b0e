#include "op_profile.h"

#include <ATen/record_function.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <utility>

#include "sd/error.h"

namespace sd_bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Frame {
  std::string name;
  Clock::time_point start;
  double children_s = 0;
  bool outermost_of_name = true;  // false for a recursive call: its time is already in the outer one
};

struct Totals {
  int64_t calls = 0;
  double self_s = 0, total_s = 0;
};

// Observer state of the profiling thread. The callbacks are plain function pointers, so the state
// is thread-local; only the thread that built the OpProfiler registers them.
thread_local std::vector<Frame> t_stack;
thread_local std::map<std::pair<std::string, std::string>, Totals>* t_totals = nullptr;
bool g_active = false;

bool is_stage(const std::string& name) { return name.rfind("sd::", 0) == 0; }

// The outermost libsd scope among the enclosing frames and `frame` itself.
std::string stage_of(const std::vector<Frame>& enclosing, const Frame& frame) {
  for (const auto& outer : enclosing) {
    if (is_stage(outer.name)) return outer.name;
  }
  return is_stage(frame.name) ? frame.name : "";
}

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  Frame frame{fn.name(), Clock::now()};
  for (const auto& outer : t_stack) {
    if (outer.name == frame.name) frame.outermost_of_name = false;
  }
  t_stack.push_back(std::move(frame));
  return nullptr;
}

void on_end(const at::RecordFunction& fn, at::ObserverContext*) {
  if (t_stack.empty() || t_totals == nullptr) return;
  // A scope begun before the profiler started has no frame: unwind to the matching name.
  if (t_stack.back().name != fn.name()) return;
  Frame frame = std::move(t_stack.back());
  t_stack.pop_back();
  const double elapsed = std::chrono::duration<double>(Clock::now() - frame.start).count();
  auto& totals = (*t_totals)[{stage_of(t_stack, frame), frame.name}];
  totals.calls += 1;
  totals.self_s += elapsed - frame.children_s;
  if (frame.outermost_of_name) totals.total_s += elapsed;
  if (!t_stack.empty()) t_stack.back().children_s += elapsed;
}

}  // namespace

OpProfiler::OpProfiler() {
  SD_CHECK(!g_active, "OpProfiler: another profiler is already recording");
  g_active = true;
  t_stack.clear();
  t_totals = new std::map<std::pair<std::string, std::string>, Totals>();
  handle_ = at::addThreadLocalCallback(at::RecordFunctionCallback(&on_start, &on_end).needsInputs(false));
  running_ = true;
}

OpProfiler::~OpProfiler() {
  if (running_) stop();
}

std::vector<OpTime> OpProfiler::stop() {
  std::vector<OpTime> rows;
  if (!running_) return rows;
  at::removeCallback(handle_);
  running_ = false;
  g_active = false;
  for (const auto& [key, totals] : *t_totals) {
    rows.push_back({key.first, key.second, totals.calls, totals.self_s, totals.total_s});
  }
  delete t_totals;
  t_totals = nullptr;
  t_stack.clear();
  std::sort(rows.begin(), rows.end(), [](const OpTime& a, const OpTime& b) { return a.self_s > b.self_s; });
  return rows;
}

}  // namespace sd_bench
