#include "stats.h"

#include <algorithm>
#include <cmath>

namespace sd_bench {

Stats summarize(std::vector<double> values) {
  Stats s;
  s.count = values.size();
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  auto percentile = [&](double q) {
    const double rank = q * static_cast<double>(n - 1);
    const auto lo = static_cast<size_t>(std::floor(rank));
    const size_t hi = std::min(lo + 1, n - 1);
    return values[lo] + (rank - static_cast<double>(lo)) * (values[hi] - values[lo]);
  };
  s.min = values.front();
  s.max = values.back();
  s.median = percentile(0.5);
  s.p90 = percentile(0.9);
  s.mean = sum(values) / static_cast<double>(n);
  if (n > 1) {
    double squares = 0;
    for (double v : values) squares += (v - s.mean) * (v - s.mean);
    s.stdev = std::sqrt(squares / static_cast<double>(n - 1));
  }
  return s;
}

Row stats_json(const Stats& s) {
  Row out;
  out["mean"] = s.mean;
  out["median"] = s.median;
  out["p90"] = s.p90;
  out["min"] = s.min;
  out["max"] = s.max;
  out["stdev"] = s.stdev;
  return out;
}

double sum(const std::vector<double>& values) {
  double total = 0;
  for (double v : values) total += v;
  return total;
}

}  // namespace sd_bench
