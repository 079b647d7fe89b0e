#pragma once
// The search for the largest batch that fits: doubling from 1 until a try fails or the limit is
// reached, then bisection between the last success and the first failure. Each batch is tried at
// most once. The try itself is the caller's (bench_throughput generates; the tests simulate an
// allocator that fails above some size), so the search can be tested without memory pressure.
#include <functional>
#include <vector>

namespace sd_bench {

struct BatchSearchResult {
  int largest_ok = 0;     // 0: batch 1 failed
  int smallest_failed = 0;  // 0: nothing failed up to the limit
  std::vector<int> tried;   // in order
};

// `fits(batch)`: true if the try succeeded, false if it ran out of memory (or exceeded a memory
// limit). Other errors are the caller's to throw; they end the search. `limit` >= 1.
BatchSearchResult search_largest_batch(const std::function<bool(int)>& fits, int limit);

}  // namespace sd_bench
