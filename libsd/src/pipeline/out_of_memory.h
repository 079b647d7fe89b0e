#pragma once
// Out-of-memory during a call, turned into one sd::OutOfMemoryError line with numbers: how much the
// failed allocation asked for and how much the device had free, read from LibTorch's allocator
// message (its wording differs between CUDA and CPU and between LibTorch 1.13 and 2.x).
#include <c10/core/Device.h>

#include <cstdint>
#include <exception>
#include <string>

namespace sd {

struct OutOfMemoryInfo {
  int64_t requested_bytes = -1;  // -1: the message did not say
  int64_t free_bytes = -1;
  std::string device;            // "cuda:0", "cpu"; empty: the message did not say
};

// Reads LibTorch's out-of-memory messages:
//   2.x CUDA:  "CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of
//               79.11 GiB of which 3.56 MiB is free. ..."
//   1.13 CUDA: "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.78 GiB total capacity;
//               13.04 GiB already allocated; 1.01 GiB free; ...)"
//   CPU:       "DefaultCPUAllocator: can't allocate memory: you tried to allocate 40000000000 bytes"
//              (1.13; 2.x says "not enough memory"). Anything else: all unknown.
OutOfMemoryInfo parse_out_of_memory(const std::string& message);

// A size in LibTorch's spelling ("20.00 MiB", "40000000000 bytes"); -1 if it is none.
int64_t parse_memory_size(const std::string& number, const std::string& unit);

// Throws sd::OutOfMemoryError for `error`, an out-of-memory (is_out_of_memory, or an
// OutOfMemoryError of an inner stage, whose numbers it keeps): "out of memory on <device> <doing>:
// asked X, Y free (<lower>)". Empties the CUDA caching allocator first, so what the failed call
// had cached goes back to the device and the pipeline serves the next call.
[[noreturn]] void throw_out_of_memory(const std::exception& error, const c10::Device& device, const std::string& doing,
                                      const std::string& lower);

}  // namespace sd
