#include "image_metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "sd/error.h"

namespace sd_bench {

namespace {

void check_same_size(const sd::Image& a, const sd::Image& b) {
  SD_CHECK(a.width == b.width && a.height == b.height, "images differ in size: ", a.width, "x", a.height, " vs ",
           b.width, "x", b.height);
  SD_CHECK(a.rgb.size() == static_cast<size_t>(a.width) * a.height * 3 && b.rgb.size() == a.rgb.size(),
           "image buffer does not hold width x height x 3 bytes");
}

std::vector<double> luminance(const sd::Image& image) {
  std::vector<double> y(static_cast<size_t>(image.width) * image.height);
  for (size_t i = 0; i < y.size(); ++i) {
    y[i] = 0.299 * image.rgb[3 * i] + 0.587 * image.rgb[3 * i + 1] + 0.114 * image.rgb[3 * i + 2];
  }
  return y;
}

// Separable Gaussian filter, "valid" output: (h - k + 1) x (w - k + 1).
std::vector<double> filter_valid(const std::vector<double>& x, int h, int w, const std::vector<double>& kernel) {
  const int k = static_cast<int>(kernel.size());
  const int oh = h - k + 1, ow = w - k + 1;
  std::vector<double> rows(static_cast<size_t>(h) * ow), out(static_cast<size_t>(oh) * ow);
  for (int r = 0; r < h; ++r) {
    for (int c = 0; c < ow; ++c) {
      double acc = 0;
      for (int i = 0; i < k; ++i) acc += kernel[i] * x[static_cast<size_t>(r) * w + c + i];
      rows[static_cast<size_t>(r) * ow + c] = acc;
    }
  }
  for (int r = 0; r < oh; ++r) {
    for (int c = 0; c < ow; ++c) {
      double acc = 0;
      for (int i = 0; i < k; ++i) acc += kernel[i] * rows[static_cast<size_t>(r + i) * ow + c];
      out[static_cast<size_t>(r) * ow + c] = acc;
    }
  }
  return out;
}

}  // namespace

double ssim_luminance(const sd::Image& a, const sd::Image& b) {
  check_same_size(a, b);
  constexpr int kWindow = 11;
  constexpr double kSigma = 1.5, kL = 255.0;
  const double c1 = (0.01 * kL) * (0.01 * kL), c2 = (0.03 * kL) * (0.03 * kL);
  SD_CHECK(a.width >= kWindow && a.height >= kWindow, "SSIM needs images of at least ", kWindow, "x", kWindow,
           " pixels, got ", a.width, "x", a.height);
  std::vector<double> kernel(kWindow);
  double total = 0;
  for (int i = 0; i < kWindow; ++i) {
    const double d = i - (kWindow - 1) / 2.0;
    kernel[i] = std::exp(-d * d / (2 * kSigma * kSigma));
    total += kernel[i];
  }
  for (double& v : kernel) v /= total;

  const auto x = luminance(a), y = luminance(b);
  std::vector<double> xx(x.size()), yy(x.size()), xy(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    xx[i] = x[i] * x[i];
    yy[i] = y[i] * y[i];
    xy[i] = x[i] * y[i];
  }
  const int h = a.height, w = a.width;
  const auto mx = filter_valid(x, h, w, kernel), my = filter_valid(y, h, w, kernel);
  const auto sxx = filter_valid(xx, h, w, kernel), syy = filter_valid(yy, h, w, kernel),
             sxy = filter_valid(xy, h, w, kernel);
  double acc = 0;
  for (size_t i = 0; i < mx.size(); ++i) {
    const double vx = sxx[i] - mx[i] * mx[i], vy = syy[i] - my[i] * my[i], cov = sxy[i] - mx[i] * my[i];
    acc += ((2 * mx[i] * my[i] + c1) * (2 * cov + c2)) / ((mx[i] * mx[i] + my[i] * my[i] + c1) * (vx + vy + c2));
  }
  return acc / static_cast<double>(mx.size());
}

ImageMetrics compare_images(const sd::Image& a, const sd::Image& b) {
  check_same_size(a, b);
  ImageMetrics m;
  double squares = 0, absolute = 0;
  for (size_t i = 0; i < a.rgb.size(); ++i) {
    const double d = std::abs(static_cast<double>(a.rgb[i]) - static_cast<double>(b.rgb[i]));
    squares += d * d;
    absolute += d;
    m.max_abs = std::max(m.max_abs, d);
  }
  const double n = static_cast<double>(a.rgb.size());
  m.mean_abs = absolute / n;
  const double mse = squares / n;
  m.psnr = mse == 0 ? std::numeric_limits<double>::infinity() : 10.0 * std::log10(255.0 * 255.0 / mse);
  m.ssim = ssim_luminance(a, b);
  return m;
}

sd::Image difference_image(const sd::Image& a, const sd::Image& b, double amplify) {
  check_same_size(a, b);
  sd::Image out = a;
  for (size_t i = 0; i < a.rgb.size(); ++i) {
    const double d = std::abs(static_cast<double>(a.rgb[i]) - static_cast<double>(b.rgb[i])) * amplify;
    out.rgb[i] = static_cast<uint8_t>(std::min(255.0, std::round(d)));
  }
  return out;
}

sd::Image hconcat(const std::vector<sd::Image>& images, int gap) {
  SD_CHECK(!images.empty(), "hconcat: no images");
  sd::Image out;
  out.height = images.front().height;
  for (size_t i = 0; i < images.size(); ++i) {
    SD_CHECK(images[i].height == out.height, "hconcat: heights differ");
    out.width += images[i].width + (i > 0 ? gap : 0);
  }
  out.rgb.assign(static_cast<size_t>(out.width) * out.height * 3, 255);
  int x0 = 0;
  for (const auto& image : images) {
    for (int r = 0; r < image.height; ++r) {
      std::copy_n(image.rgb.begin() + static_cast<size_t>(r) * image.width * 3, static_cast<size_t>(image.width) * 3,
                  out.rgb.begin() + (static_cast<size_t>(r) * out.width + x0) * 3);
    }
    x0 += image.width + gap;
  }
  return out;
}

sd::Image vconcat(const std::vector<sd::Image>& images, int gap) {
  SD_CHECK(!images.empty(), "vconcat: no images");
  sd::Image out;
  for (size_t i = 0; i < images.size(); ++i) {
    out.width = std::max(out.width, images[i].width);
    out.height += images[i].height + (i > 0 ? gap : 0);
  }
  out.rgb.assign(static_cast<size_t>(out.width) * out.height * 3, 255);
  int y0 = 0;
  for (const auto& image : images) {
    for (int r = 0; r < image.height; ++r) {
      std::copy_n(image.rgb.begin() + static_cast<size_t>(r) * image.width * 3, static_cast<size_t>(image.width) * 3,
                  out.rgb.begin() + static_cast<size_t>(y0 + r) * out.width * 3);
    }
    y0 += image.height + gap;
  }
  return out;
}

sd::Image downscale(const sd::Image& image, int factor) {
  SD_CHECK(factor >= 1, "downscale: factor must be >= 1, got ", factor);
  if (factor == 1) return image;
  sd::Image out;
  out.width = std::max(1, image.width / factor);
  out.height = std::max(1, image.height / factor);
  out.rgb.resize(static_cast<size_t>(out.width) * out.height * 3);
  for (int r = 0; r < out.height; ++r) {
    for (int c = 0; c < out.width; ++c) {
      for (int ch = 0; ch < 3; ++ch) {
        int acc = 0, n = 0;
        for (int dy = 0; dy < factor && r * factor + dy < image.height; ++dy) {
          for (int dx = 0; dx < factor && c * factor + dx < image.width; ++dx) {
            acc += image.rgb[(static_cast<size_t>(r * factor + dy) * image.width + c * factor + dx) * 3 + ch];
            ++n;
          }
        }
        out.rgb[(static_cast<size_t>(r) * out.width + c) * 3 + ch] = static_cast<uint8_t>((acc + n / 2) / n);
      }
    }
  }
  return out;
}

}  // namespace sd_bench
