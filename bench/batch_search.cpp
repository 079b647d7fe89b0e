#include "batch_search.h"

#include <algorithm>
#include <map>
#include <stdexcept>
#include <string>

namespace sd_bench {

BatchSearchResult search_largest_batch(const std::function<bool(int)>& fits, int limit) {
  if (limit < 1) throw std::invalid_argument("search_largest_batch: limit must be >= 1, got " + std::to_string(limit));
  BatchSearchResult result;
  std::map<int, bool> outcome;
  auto attempt = [&](int batch) {
    if (auto it = outcome.find(batch); it != outcome.end()) return it->second;
    result.tried.push_back(batch);
    return outcome[batch] = fits(batch);
  };
  int good = 0, bad = 0;
  for (long batch = 1;; batch *= 2) {
    const int b = static_cast<int>(std::min<long>(batch, limit));
    if (!attempt(b)) {
      bad = b;
      break;
    }
    good = b;
    if (b == limit) break;
  }
  while (bad != 0 && bad - good > 1) {
    const int mid = good + (bad - good) / 2;
    if (attempt(mid)) {
      good = mid;
    } else {
      bad = mid;
    }
  }
  result.largest_ok = good;
  result.smallest_failed = bad;
  return result;
}

}  // namespace sd_bench
