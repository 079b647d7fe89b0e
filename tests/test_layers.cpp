// The building blocks' speed paths give what the plain LibTorch formulation gives: pre-packed
// convolutions, in-place residual adds and SiLU, and the copy-based 2x nearest upsampling.
#include <torch/torch.h>

#include <catch2/catch.hpp>

#include "models/conv2d.h"
#include "models/layers.h"

namespace {

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat) - b.to(torch::kFloat)).abs().max().item<double>();
}

torch::Tensor channels_last(const torch::Tensor& t) { return t.contiguous(torch::MemoryFormat::ChannelsLast); }

sd::Conv2d make_conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, torch::ScalarType dtype) {
  torch::manual_seed(3);
  sd::Conv2d conv(torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2));
  conv->to(dtype);
  for (auto& p : conv->parameters()) {
    if (p.dim() == 4) p.set_data(channels_last(p));
  }
  return conv;
}

}  // namespace

TEST_CASE("Pre-packed convolutions give the plain convolution's results", "[unit][conv]") {
  c10::InferenceMode guard;
  for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
    for (int64_t kernel : {1, 3}) {
      for (int64_t stride : {1, 2}) {
        INFO("dtype " << dtype << " kernel " << kernel << " stride " << stride);
        auto conv = make_conv(48, 40, kernel, stride, dtype);
        const auto x = channels_last(torch::randn({2, 48, 8, 8}).to(dtype));
        const auto plain = conv->forward(x);  // prepack off: LibTorch's path
        CHECK_FALSE(conv->packed());
        conv->prepack_max_pixels = 1 << 20;
        const auto packed = conv->forward(x);
        CHECK(conv->packed() == sd::conv_prepacking_available());
        REQUIRE(packed.sizes() == plain.sizes());
        CHECK(packed.scalar_type() == dtype);
        // The same oneDNN kernel either way; only the weight's reorder moved to the first call.
        CHECK(max_abs_diff(packed, plain) <= 1e-5 * (1 + plain.to(torch::kFloat).abs().max().item<double>()));
        // Another small size after packing (odd sizes, batch 1) is still right.
        const auto y = channels_last(torch::randn({1, 48, 7, 5}).to(dtype));
        conv->prepack_max_pixels = 0;
        const auto y_plain = conv->forward(y);
        conv->prepack_max_pixels = 1 << 20;
        CHECK(max_abs_diff(conv->forward(y), y_plain) <= 1e-5 * (1 + y_plain.to(torch::kFloat).abs().max().item<double>()));
      }
    }
  }
}

TEST_CASE("Convolutions outside the prepacking rule take LibTorch's path", "[unit][conv]") {
  c10::InferenceMode guard;
  auto conv = make_conv(16, 16, 3, 1, torch::kFloat);
  conv->prepack_max_pixels = 1 << 20;
  // Input above the pixel limit: the reorder is cheap next to the arithmetic, no packed copy is made.
  conv->prepack_max_pixels = 2 * 16 * 16;
  conv->forward(channels_last(torch::randn({2, 16, 32, 32})));
  CHECK_FALSE(conv->packed());
  // Contiguous (NCHW) input.
  conv->forward(torch::randn({1, 16, 8, 8}));
  CHECK_FALSE(conv->packed());
  // A dtype other than the weights'.
  CHECK_THROWS(conv->forward(channels_last(torch::randn({1, 16, 8, 8}).to(torch::kBFloat16))));
  CHECK_FALSE(conv->packed());
  // The library packs fp32 weights by default, not bf16 ones (they gain too little for the memory).
  CHECK(sd::default_prepack_max_pixels(torch::kFloat) >= 2 * 8 * 8);
  CHECK(sd::default_prepack_max_pixels(torch::kBFloat16) == 0);
  // enable_conv_prepacking finds nested convolutions.
  sd::ResnetBlock2D block(16, 32, 0, 4, 1e-6);
  CHECK(sd::enable_conv_prepacking(*block, 1 << 20) == 3);  // conv1, conv2, conv_shortcut
  for (auto& p : block->parameters()) {
    if (p.dim() == 4) p.set_data(channels_last(p));
  }
  const auto x = channels_last(torch::randn({1, 16, 4, 4}));
  const auto plain_result = [&] {
    sd::enable_conv_prepacking(*block, 0);
    auto out = block->forward(x, {});
    sd::enable_conv_prepacking(*block, 1 << 20);
    return out;
  }();
  CHECK(torch::allclose(block->forward(x, {}), plain_result, 1e-5, 1e-6));
  int64_t packed = 0;
  for (const auto& child : block->modules()) {
    if (auto* c = dynamic_cast<sd::Conv2dImpl*>(child.get())) packed += c->packed() ? 1 : 0;
  }
  CHECK(packed == (sd::conv_prepacking_available() ? 3 : 0));
}

TEST_CASE("repeat_2x2 is nearest upsampling to twice the size, keeping the layout", "[unit][upsample]") {
  c10::InferenceMode guard;
  const auto x = torch::randn({2, 5, 3, 4});
  const auto reference = torch::upsample_nearest2d(x, {6, 8});
  CHECK(torch::equal(sd::repeat_2x2(x), reference));
  const auto cl = sd::repeat_2x2(channels_last(x));
  CHECK(torch::equal(cl, reference));
  CHECK(cl.is_contiguous(torch::MemoryFormat::ChannelsLast));
  const auto bf = sd::repeat_2x2(channels_last(x.to(torch::kBFloat16)));
  CHECK(bf.scalar_type() == torch::kBFloat16);
  CHECK(torch::equal(bf.to(torch::kFloat), torch::upsample_nearest2d(x.to(torch::kBFloat16).to(torch::kFloat), {6, 8})));
}

TEST_CASE("add_into adds in place only where the result is the same", "[unit][layers]") {
  c10::InferenceMode guard;
  const auto a = torch::randn({2, 3, 4, 4}), b = torch::randn({2, 3, 4, 4});
  const auto expected = a + b;
  auto fresh = a.clone();
  const auto sum = sd::add_into(fresh, b);
  CHECK(torch::equal(sum, expected));
  CHECK(sum.data_ptr() == fresh.data_ptr());  // in place
  // Broadcasting into the fresh tensor's shape is fine in place.
  const auto bias = torch::randn({2, 3, 1, 1});
  auto fresh2 = a.clone();
  CHECK(torch::equal(sd::add_into(fresh2, bias), a + bias));
  CHECK(sd::add_into(fresh2, bias).data_ptr() == fresh2.data_ptr());
  // Another dtype promotes as `+` does (autocast relies on it), so a new tensor is made.
  const auto low = a.to(torch::kBFloat16);
  const auto promoted = sd::add_into(low, b);
  CHECK(promoted.scalar_type() == torch::kFloat);
  CHECK(torch::equal(promoted, low + b));
  // A smaller fresh tensor cannot hold the broadcast result.
  const auto small = torch::randn({2, 3, 1, 1});
  const auto grown = sd::add_into(small, a);
  CHECK(grown.sizes() == a.sizes());
  CHECK(torch::equal(grown, small + a));
}
