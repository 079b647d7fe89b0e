#include "models/conv2d.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>

#include <algorithm>
#include <optional>
#include <string>

#include "core/autocast_state.h"
#include "core/log_macros.h"
#include "core/torch_version.h"

namespace sd {
namespace {

struct PrepackOps {
  c10::OperatorHandle prepack;
  c10::OperatorHandle run;
};

// The operators as LibTorch 1.13 declares them: conv2d_prepack(W, B?, stride, padding, dilation,
// groups, input_size, attr) and conv2d_run(X, context). Another signature -> not used.
const std::optional<PrepackOps>& prepack_ops() {
  static const std::optional<PrepackOps> ops = []() -> std::optional<PrepackOps> {
    auto& dispatcher = c10::Dispatcher::singleton();
    auto prepack = dispatcher.findSchema({"mkldnn_prepacked::conv2d_prepack", ""});
    auto run = dispatcher.findSchema({"mkldnn_prepacked::conv2d_run", ""});
    if (!prepack || !run) return std::nullopt;
    if (prepack->schema().arguments().size() != 8 || run->schema().arguments().size() != 2) return std::nullopt;
    return PrepackOps{*prepack, *run};
  }();
  return ops;
}

// LibTorch's option variants are c10::variant before 2.1, std::variant since.
#if SD_TORCH_AT_LEAST(2, 1)
namespace variant_ns = std;
#else
namespace variant_ns = c10;
#endif

const torch::ExpandingArray<2>* explicit_padding(const torch::nn::detail::ConvNdOptions<2>& options) {
  return variant_ns::get_if<torch::ExpandingArray<2>>(&options.padding());
}

bool zero_padding_mode(const torch::nn::detail::ConvNdOptions<2>& options) {
  return variant_ns::holds_alternative<torch::enumtype::kZeros>(options.padding_mode());
}

}  // namespace

bool conv_prepacking_available() { return prepack_ops().has_value(); }

int64_t default_prepack_max_pixels(torch::ScalarType dtype) { return dtype == torch::kFloat ? 2 * 16 * 16 : 0; }

bool Conv2dImpl::worth_packing(const torch::Tensor& x) const {
  if (prepack_max_pixels <= 0 || packing_failed_ || !conv_prepacking_available()) return false;
  if (!x.device().is_cpu() || x.dim() != 4 || x.scalar_type() != weight.scalar_type()) return false;
  if (x.scalar_type() != torch::kFloat && x.scalar_type() != torch::kBFloat16) return false;
  if (x.size(0) * x.size(2) * x.size(3) > prepack_max_pixels) return false;
  if (!x.is_contiguous(torch::MemoryFormat::ChannelsLast) || !weight.is_contiguous(torch::MemoryFormat::ChannelsLast))
    return false;
  if (!zero_padding_mode(options) || explicit_padding(options) == nullptr) return false;
  return !autocast_enabled(c10::kCPU);  // autocast casts inside aten::conv2d; the packed path would skip that
}

torch::Tensor Conv2dImpl::forward(const torch::Tensor& x) {
  if (!worth_packing(x)) return torch::nn::Conv2dImpl::forward(x);
  const auto& ops = *prepack_ops();
  if (!packed()) {
    try {
      torch::jit::Stack stack{weight,
                              bias.defined() ? c10::IValue(bias) : c10::IValue(),
                              c10::IValue(c10::IntArrayRef(options.stride()).vec()),
                              c10::IValue(c10::IntArrayRef(*explicit_padding(options)).vec()),
                              c10::IValue(c10::IntArrayRef(options.dilation()).vec()),
                              c10::IValue(options.groups()),
                              c10::IValue(x.sizes().vec()),
                              c10::IValue(std::string("none"))};
      ops.prepack.callBoxed(&stack);
      packed_context_ = std::move(stack.at(0));
    } catch (const std::exception& e) {
      // Not fatal: this convolution keeps LibTorch's ordinary path.
      packing_failed_ = true;
      SD_LOG_DEBUG("Conv2d: oneDNN weight prepacking failed, using the plain path: ",
                   std::string(e.what()).substr(0, std::string(e.what()).find('\n')));
      return torch::nn::Conv2dImpl::forward(x);
    }
  }
  torch::jit::Stack stack{x, packed_context_};
  ops.run.callBoxed(&stack);
  return stack.at(0).toTensor();
}

int64_t enable_conv_prepacking(torch::nn::Module& module, int64_t max_pixels) {
  int64_t count = 0;
  for (const auto& child : module.modules()) {
    if (auto* conv = dynamic_cast<Conv2dImpl*>(child.get())) {
      conv->prepack_max_pixels = std::max<int64_t>(0, max_pixels);
      ++count;
    }
  }
  return count;
}

}  // namespace sd
