// Out-of-memory as sd::OutOfMemoryError with numbers (pipeline/out_of_memory.h): LibTorch's real
// allocator messages of each kind, garbage that must give no numbers, the one-line error, and the
// public stages that the benchmarks call directly (predict_noise, decode) failing the same way
// under a real CPU allocator failure, after which the pipeline's results are unchanged.
#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <new>
#include <string>

#include "address_space_limit.h"
#include "golden.h"
#include "pipeline/out_of_memory.h"
#include "sd/error.h"
#include "sd/pipeline.h"
#include "skip.h"

namespace {

constexpr int64_t kMiB = int64_t{1} << 20, kGiB = int64_t{1} << 30;

// LibTorch's own wording, copied from its allocators' messages.
const char* const kCuda2 =
    "CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of 79.11 GiB of which 3.56 MiB "
    "is free. Including non-PyTorch memory, this process has 79.10 GiB memory in use. Of the allocated memory "
    "78.47 GiB is allocated by PyTorch, and 1.23 MiB is reserved but unallocated. If reserved but unallocated "
    "memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See "
    "documentation for Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)";
const char* const kCuda113 =
    "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 1; 15.78 GiB total capacity; 13.04 GiB already "
    "allocated; 1.01 GiB free; 13.29 GiB reserved in total by PyTorch) If reserved memory is >> allocated memory "
    "try setting max_split_size_mb to avoid fragmentation.  See documentation for Memory Management and "
    "PYTORCH_CUDA_ALLOC_CONF";
const char* const kCpu113 =
    "[enforce fail at alloc_cpu.cpp:75] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to "
    "allocate 40000000000 bytes. Error code 12 (Cannot allocate memory)";
const char* const kCpu2 =
    "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: you tried to allocate "
    "40000000000 bytes.";

int64_t rounded(double bytes) { return static_cast<int64_t>(std::llround(bytes)); }

std::string tiny() { return (golden::dir() / "pipelines/sd1_tiny").string(); }

}  // namespace

TEST_CASE("LibTorch's out-of-memory messages give what was asked, what was free and the device", "[unit][memory]") {
  const sd::OutOfMemoryInfo cuda2 = sd::parse_out_of_memory(kCuda2);
  CHECK(cuda2.requested_bytes == 20 * kMiB);
  CHECK(cuda2.free_bytes == rounded(3.56 * kMiB));
  CHECK(cuda2.device == "cuda:0");
  const sd::OutOfMemoryInfo cuda113 = sd::parse_out_of_memory(kCuda113);
  CHECK(cuda113.requested_bytes == 2 * kGiB);
  CHECK(cuda113.free_bytes == rounded(1.01 * kGiB));
  CHECK(cuda113.device == "cuda:1");
  for (const char* cpu : {kCpu113, kCpu2}) {
    const sd::OutOfMemoryInfo info = sd::parse_out_of_memory(cpu);
    CHECK(info.requested_bytes == 40000000000);
    CHECK(info.free_bytes == -1);
    CHECK(info.device == "cpu");
  }
  // c10::Error appends a backtrace: only the first line is read.
  const sd::OutOfMemoryInfo with_backtrace =
      sd::parse_out_of_memory(std::string("out of memory\nTried to allocate 5.00 GiB (GPU 3; 1.00 GiB free)"));
  CHECK(with_backtrace.requested_bytes == -1);
  CHECK(with_backtrace.device.empty());
}

TEST_CASE("Garbage out-of-memory messages give no numbers", "[unit][memory]") {
  for (const char* garbage :
       {"", "out of memory", "CUDA out of memory. Tried to allocate lots", "Tried to allocate 5.00 XB.",
        "Tried to allocate -3 bytes", "Tried to allocate 99999999999999999999 GiB", "free free free",
        "GPU has a total capacity of which is free", "\xff\xfe Tried to allocate"}) {
    INFO(garbage);
    const sd::OutOfMemoryInfo info = sd::parse_out_of_memory(garbage);
    CHECK(info.requested_bytes == -1);
    CHECK(info.free_bytes == -1);
    CHECK(info.device.empty());
  }
  CHECK(sd::parse_memory_size("1.5", "KiB") == 1536);
  CHECK(sd::parse_memory_size("7", "bytes") == 7);
  CHECK(sd::parse_memory_size("1", "PB") == -1);
  CHECK(sd::parse_memory_size("x", "MiB") == -1);
}

TEST_CASE("An out-of-memory becomes one sd::OutOfMemoryError line with its numbers", "[unit][memory]") {
  auto error_of = [](const std::exception& e, const std::string& device) {
    try {
      sd::throw_out_of_memory(e, c10::Device(device), "generating 512x512, batch 8", "lower the batch");
    } catch (const sd::OutOfMemoryError& oom) {
      return oom;
    }
    FAIL("no sd::OutOfMemoryError");
    return sd::OutOfMemoryError("", 0, 0);
  };
  const c10::Error cuda(c10::SourceLocation{__func__, __FILE__, __LINE__}, kCuda113);
  const sd::OutOfMemoryError from_cuda = error_of(cuda, "cuda:1");
  CHECK(std::string(from_cuda.what()) ==
        "out of memory on cuda:1 generating 512x512, batch 8: asked 2.0 GiB, 1.0 GiB free (lower the batch)");
  CHECK(from_cuda.requested_bytes() == 2 * kGiB);
  CHECK(from_cuda.free_bytes() == rounded(1.01 * kGiB));
  // A stage's error, rewrapped by the generation: the numbers stay, the words are the generation's.
  const sd::OutOfMemoryError rewrapped = error_of(from_cuda, "cuda:1");
  CHECK(std::string(rewrapped.what()) == std::string(from_cuda.what()));
  CHECK(rewrapped.requested_bytes() == 2 * kGiB);
  // No numbers: LibTorch's first line (or the exception's name) instead.
  const sd::OutOfMemoryError bad_alloc = error_of(std::bad_alloc(), "cpu");
  CHECK(std::string(bad_alloc.what()) == "out of memory on cpu generating 512x512, batch 8: std::bad_alloc (lower the batch)");
  CHECK(bad_alloc.requested_bytes() == -1);
  CHECK(bad_alloc.free_bytes() == -1);
}

TEST_CASE("predict_noise and decode out of memory: sd::OutOfMemoryError, and the pipeline's results unchanged",
          "[unit][memory]") {
  SD_SKIP_IF_FAILED_ALLOCATIONS_ABORT();
  auto pipe = sd::Pipeline::load(tiny());  // the stages have no up-front estimate (that is generate()'s)
  const auto prompt = pipe.encode_prompt("a fox", "", 1, true);
  const auto small = torch::randn({1, 4, 8, 8});
  const auto t = torch::tensor(500);
  const auto noise = pipe.predict_noise(small, t, prompt, 7.5);
  const auto image = pipe.decode(small);
  const auto large = torch::zeros({1, 4, 1024, 1024});  // 16 MiB of latents; far more for the stages
  // Which allocation fails first under the cap varies from run to run. Rarely (once in CI, LibTorch
  // 2.11, not reproduced in 39 runs since) it is oneDNN's own, inside a primitive's creation: its
  // error says only "could not create a primitive", not why, so libsd cannot tell it from other
  // oneDNN failures and passes it on. That run warns and checks the rest; any other error fails.
  const std::string onednn_failure = "not an sd::OutOfMemoryError: could not create a primitive";
  auto stage_error = [](const std::function<void()>& call) -> std::string {
    try {
      call();
    } catch (const sd::OutOfMemoryError& e) {
      return e.what();
    } catch (const std::exception& e) {
      return std::string("not an sd::OutOfMemoryError: ") + e.what();
    }
    return "no error";
  };
  std::string unet_error, decode_error;
  {
    sd_test::AddressSpaceLimit limit(64 << 20);
    unet_error = stage_error([&] { pipe.predict_noise(large, t, prompt, 7.5); });
    decode_error = stage_error([&] { pipe.decode(large); });
  }
  auto check_error = [&](const std::string& error, const std::string& expected_start) {
    if (error == onednn_failure) {
      WARN("oneDNN ran out first (" << error << "): the wrapping was not exercised in this run");
      return;
    }
    CHECK_THAT(error, Catch::StartsWith(expected_start));
  };
  check_error(unet_error, "out of memory on cpu in predict_noise on latents [1, 4, 1024, 1024]: asked ");
  check_error(decode_error, "out of memory on cpu decoding latents [1, 4, 1024, 1024]: asked ");
  CHECK(torch::equal(pipe.predict_noise(small, t, prompt, 7.5), noise));
  CHECK(torch::equal(pipe.decode(small), image));
}
