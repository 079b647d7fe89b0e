#pragma once
// Summary statistics of repeated measurements.
#include <cstddef>
#include <vector>

#include "row.h"

namespace sd_bench {

struct Stats {
  double mean = 0, median = 0, p90 = 0, min = 0, max = 0, stdev = 0;
  size_t count = 0;
};
// Percentiles interpolate linearly between order statistics (numpy's default); stdev is the
// sample standard deviation (n - 1), 0 for a single value. Empty input -> all zeros.
Stats summarize(std::vector<double> values);
Row stats_json(const Stats& stats);
double sum(const std::vector<double>& values);

}  // namespace sd_bench
