#pragma once
// Module constructors initialize their parameters from LibTorch's global generator; whatever they
// draw is overwritten (by the file's weights, or by randomize_weights), so the global generator's
// state is put back as it was: loading a pipeline (or inspecting a model) must not change another
// computation's random numbers.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <mutex>

namespace sd {

class GlobalGeneratorRestorer {
 public:
  GlobalGeneratorRestorer() : generator_(at::detail::getDefaultCPUGenerator()) {
    std::lock_guard<std::mutex> lock(generator_.mutex());
    state_ = generator_.get_state();
  }
  ~GlobalGeneratorRestorer() {
    std::lock_guard<std::mutex> lock(generator_.mutex());
    generator_.set_state(state_);
  }
  GlobalGeneratorRestorer(const GlobalGeneratorRestorer&) = delete;
  GlobalGeneratorRestorer& operator=(const GlobalGeneratorRestorer&) = delete;

 private:
  at::Generator generator_;
  at::Tensor state_;
};

}  // namespace sd
