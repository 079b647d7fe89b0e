// Pillow's Lanczos resize and luma conversion, reproduced bit for bit because diffusers' image
// processor feeds the VAE with exactly these bytes (Ref: Pillow src/libImaging/Resample.c, Convert.c).
#include <cmath>
#include <vector>

#include "sd/error.h"
#include "sd/image.h"

namespace sd {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's fixed point for 8-bit images
constexpr double kLanczosSupport = 3.0;

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= M_PI;
  return std::sin(x) / x;
}

double lanczos(double x) { return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3) : 0.0; }

// One axis of the resampling: for each output index, the first input index, how many follow, and
// their integer weights.
struct AxisFilter {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<int32_t> weights;  // [out_size * ksize]
};

AxisFilter make_axis_filter(int in_size, int out_size) {
  AxisFilter f;
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = kLanczosSupport * filterscale;
  f.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  f.first.resize(out_size);
  f.count.resize(out_size);
  f.weights.assign(static_cast<size_t>(out_size) * f.ksize, 0);
  std::vector<double> k(f.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);  // truncation, as Pillow's (int) cast
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      k[x] = lanczos((x + xmin - center + 0.5) * ss);
      ww += k[x];
    }
    for (int x = 0; x < xmax; ++x) {
      if (ww != 0.0) k[x] /= ww;
    }
    for (int x = 0; x < xmax; ++x) {
      const double scaled = k[x] * (1 << kPrecisionBits);
      f.weights[static_cast<size_t>(xx) * f.ksize + x] =
          static_cast<int32_t>(k[x] < 0 ? -0.5 + scaled : 0.5 + scaled);
    }
    f.first[xx] = xmin;
    f.count[xx] = xmax;
  }
  return f;
}

uint8_t clip8(int32_t v) {
  const int32_t shifted = v >> kPrecisionBits;  // arithmetic shift: floor, as Pillow's lookup table
  return static_cast<uint8_t>(shifted < 0 ? 0 : shifted > 255 ? 255 : shifted);
}

Image resample_horizontal(const Image& in, int out_width) {
  const AxisFilter f = make_axis_filter(in.width, out_width);
  Image out;
  out.width = out_width;
  out.height = in.height;
  out.rgb.resize(static_cast<size_t>(out_width) * in.height * 3);
  for (int y = 0; y < in.height; ++y) {
    const uint8_t* row = in.rgb.data() + static_cast<size_t>(y) * in.width * 3;
    uint8_t* dst = out.rgb.data() + static_cast<size_t>(y) * out_width * 3;
    for (int xx = 0; xx < out_width; ++xx) {
      const int32_t* k = f.weights.data() + static_cast<size_t>(xx) * f.ksize;
      for (int c = 0; c < 3; ++c) {
        int32_t ss = 1 << (kPrecisionBits - 1);
        for (int x = 0; x < f.count[xx]; ++x) ss += row[(x + f.first[xx]) * 3 + c] * k[x];
        dst[xx * 3 + c] = clip8(ss);
      }
    }
  }
  return out;
}

Image resample_vertical(const Image& in, int out_height) {
  const AxisFilter f = make_axis_filter(in.height, out_height);
  Image out;
  out.width = in.width;
  out.height = out_height;
  out.rgb.resize(static_cast<size_t>(in.width) * out_height * 3);
  const size_t stride = static_cast<size_t>(in.width) * 3;
  for (int yy = 0; yy < out_height; ++yy) {
    const int32_t* k = f.weights.data() + static_cast<size_t>(yy) * f.ksize;
    uint8_t* dst = out.rgb.data() + yy * stride;
    for (size_t i = 0; i < stride; ++i) {
      int32_t ss = 1 << (kPrecisionBits - 1);
      for (int y = 0; y < f.count[yy]; ++y) ss += in.rgb[(y + f.first[yy]) * stride + i] * k[y];
      dst[i] = clip8(ss);
    }
  }
  return out;
}

void check_image(const Image& image, const char* what) {
  SD_CHECK(image.width > 0 && image.height > 0 &&
               image.rgb.size() == static_cast<size_t>(image.width) * image.height * 3,
           what, ": image has inconsistent size ", image.width, "x", image.height, " with ", image.rgb.size(),
           " bytes");
}

}  // namespace

Image resize_lanczos(const Image& image, int width, int height) {
  check_image(image, "resize_lanczos");
  SD_CHECK(width > 0 && height > 0 && width <= kMaxImageSide && height <= kMaxImageSide,
           "resize_lanczos: target size ", width, "x", height, " outside [1, ", kMaxImageSide, "] per side");
  // Pillow: the horizontal pass, then the vertical one, each only where the size changes.
  Image out = image;
  if (width != out.width) out = resample_horizontal(out, width);
  if (height != out.height) out = resample_vertical(out, height);
  return out;
}

Image to_grayscale(const Image& image) {
  check_image(image, "to_grayscale");
  Image out = image;
  for (size_t i = 0; i < out.rgb.size(); i += 3) {
    const uint32_t r = image.rgb[i], g = image.rgb[i + 1], b = image.rgb[i + 2];
    const auto luma = static_cast<uint8_t>((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16);
    out.rgb[i] = out.rgb[i + 1] = out.rgb[i + 2] = luma;
  }
  return out;
}

}  // namespace sd
