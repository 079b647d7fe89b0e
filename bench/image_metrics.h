#pragma once
// Image comparison for bench_quality, on 8-bit RGB images (sd::Image), in plain C++.
//   PSNR   10 log10(255^2 / MSE) over all pixels and channels; infinite for identical images.
//   SSIM   Wang et al. 2004 on luminance Y = 0.299 R + 0.587 G + 0.114 B (8-bit scale, L = 255,
//          K1 = 0.01, K2 = 0.03), 11x11 Gaussian window with sigma 1.5, averaged over the positions
//          where the window lies wholly inside the image (no padding).
//   max_abs, mean_abs  of |A - B| over all pixels and channels, in 8-bit levels.
#include <vector>

#include "sd/image.h"

namespace sd_bench {

struct ImageMetrics {
  double psnr = 0;  // +inf when identical
  double ssim = 0;
  double max_abs = 0, mean_abs = 0;
};
ImageMetrics compare_images(const sd::Image& a, const sd::Image& b);
double ssim_luminance(const sd::Image& a, const sd::Image& b);

// |A - B| x amplify per channel, clamped to 255: where the precisions disagree.
sd::Image difference_image(const sd::Image& a, const sd::Image& b, double amplify);
// Images side by side with a `gap` of white pixels between them (all of the same height).
sd::Image hconcat(const std::vector<sd::Image>& images, int gap);
// Stacked vertically, left-aligned, white background.
sd::Image vconcat(const std::vector<sd::Image>& images, int gap);
// Box-filter downscale by an integer factor (>= 1).
sd::Image downscale(const sd::Image& image, int factor);

}  // namespace sd_bench
