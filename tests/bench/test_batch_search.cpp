// bench_throughput's largest-batch search, against a simulated allocator that runs out of memory
// above a given batch (the way a GPU would), and the bench library's small parsers and statistics.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "batch_search.h"
#include "options.h"
#include "sd/error.h"
#include "stats.h"
#include "tool.h"
// Last: Debian's LibTorch pulls in glog, whose CHECK(cond) would replace Catch's CHECK(...).
#include <catch2/catch.hpp>

namespace {

// A try that "allocates" batch x 1 GiB against `capacity_gb`: above it, the error the pipeline
// throws when its allocator fails (sd::OutOfMemoryError, with the bytes asked and free).
struct SimulatedAllocator {
  int capacity_gb = 0;
  int tries = 0;
  void generate(int batch) {
    ++tries;
    if (batch <= capacity_gb) return;
    throw sd::OutOfMemoryError("out of memory on cuda:0 generating 512x512, batch " + std::to_string(batch),
                               int64_t{batch} << 30, int64_t{capacity_gb} << 30);
  }
  // What bench_throughput does with a try: out of memory means "does not fit", the rest propagates.
  bool fits(int batch) {
    try {
      generate(batch);
      return true;
    } catch (const std::exception& e) {
      if (!sd_bench::is_out_of_memory(e)) throw;
      return false;
    }
  }
};

}  // namespace

TEST_CASE("the largest-batch search doubles then bisects to the exact limit", "[unit][bench]") {
  SimulatedAllocator gpu{37};
  const auto found = sd_bench::search_largest_batch([&](int b) { return gpu.fits(b); }, 64);
  CHECK(found.largest_ok == 37);
  CHECK(found.smallest_failed == 38);
  CHECK((found.tried == std::vector<int>{1, 2, 4, 8, 16, 32, 64, 48, 40, 36, 38, 37}));
  CHECK(gpu.tries == 12);  // each batch once
}

TEST_CASE("the largest-batch search stops at its limit and reports when batch 1 fails", "[unit][bench]") {
  SimulatedAllocator big{1000};
  auto found = sd_bench::search_largest_batch([&](int b) { return big.fits(b); }, 20);
  CHECK(found.largest_ok == 20);
  CHECK(found.smallest_failed == 0);
  CHECK((found.tried == std::vector<int>{1, 2, 4, 8, 16, 20}));

  SimulatedAllocator none{0};
  found = sd_bench::search_largest_batch([&](int b) { return none.fits(b); }, 64);
  CHECK(found.largest_ok == 0);
  CHECK(found.smallest_failed == 1);
  CHECK((found.tried == std::vector<int>{1}));

  CHECK_THROWS_AS(sd_bench::search_largest_batch([](int) { return true; }, 0), std::invalid_argument);
}

TEST_CASE("an error other than out of memory ends the search", "[unit][bench]") {
  int tries = 0;
  auto fits = [&](int batch) -> bool {
    ++tries;
    if (batch == 4) throw std::runtime_error("a bad weight file");
    return true;
  };
  CHECK_THROWS_WITH(sd_bench::search_largest_batch(fits, 64), "a bad weight file");
  CHECK(tries == 3);
  CHECK_FALSE(sd_bench::is_out_of_memory(std::runtime_error("shape mismatch")));
}

TEST_CASE("bench option lists: on-off switches and positive integers", "[unit][bench]") {
  CHECK((sd_bench::parse_switch_list("on,off", "--cuda-graphs") == std::vector<bool>{true, false}));
  CHECK((sd_bench::parse_switch_list(" off ", "--vae-slicing") == std::vector<bool>{false}));
  CHECK_THROWS_AS(sd_bench::parse_switch_list("maybe", "--vae-slicing"), sd_bench::UsageError);
  CHECK_THROWS_WITH(sd_bench::parse_switch_list("", "--cuda-graphs"), Catch::Contains("--cuda-graphs"));
  CHECK((sd_bench::parse_positive_int_list("1, 2,4", "--batch") == std::vector<int>{1, 2, 4}));
  CHECK_THROWS_AS(sd_bench::parse_positive_int_list("1,0", "--batch"), sd_bench::UsageError);
}

TEST_CASE("bench decoder lists: each name sets the load options it measures", "[unit][bench]") {
  const auto decoders = sd_bench::parse_decoder_list("vae, tiled,tiny");
  REQUIRE(decoders.size() == 3);
  sd_bench::CommonOptions common;
  common.vae_tiny = "/models/taesd";
  std::vector<sd::LoadOptions> loads(3);
  for (size_t i = 0; i < 3; ++i) sd_bench::apply_decoder(loads[i], decoders[i], common);
  CHECK(loads[0].vae_tiling == sd::VaeTiling::kOff);
  CHECK(loads[0].vae_tiny.empty());
  CHECK(loads[1].vae_tiling == sd::VaeTiling::kOn);
  CHECK(loads[1].vae_tiny.empty());
  CHECK(loads[2].vae_tiling == sd::VaeTiling::kOff);
  CHECK(loads[2].vae_tiny == "/models/taesd");
  CHECK_THROWS_WITH(sd_bench::parse_decoder_list("vae,huge"), Catch::Contains("unknown decoder 'huge'"));
  CHECK_THROWS_AS(sd_bench::parse_decoder_list(" , "), sd_bench::UsageError);
}

TEST_CASE("bench statistics: numpy's percentiles and the sample standard deviation", "[unit][bench]") {
  const auto s = sd_bench::summarize({4.0, 1.0, 3.0, 2.0});
  CHECK(s.median == Approx(2.5));
  CHECK(s.p90 == Approx(3.7));  // numpy.percentile([1, 2, 3, 4], 90)
  CHECK(s.stdev == Approx(1.2909944));
  CHECK(s.min == 1.0);
  CHECK(s.max == 4.0);
  CHECK(sd_bench::summarize({}).count == 0);
}
