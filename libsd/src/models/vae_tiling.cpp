// Ref: diffusers src/diffusers/models/autoencoders/autoencoder_kl.py @ 0.27.2
#include "models/vae_tiling.h"

#include <algorithm>
#include <vector>

#include "sd/error.h"

namespace sd {
namespace {

constexpr double kOverlapFactor = 0.25;  // diffusers' tile_overlap_factor for AutoencoderKL

// diffusers: int(sample_size / 2 ** (len(block_out_channels) - 1)), a truncating float division.
int64_t latent_tile_edge(const VAEConfig& c) {
  SD_CHECK(c.sample_size > 0, "VAE tiling: config sample_size must be positive, got ", c.sample_size);
  return static_cast<int64_t>(static_cast<double>(c.sample_size) / static_cast<double>(c.downscale_factor()));
}

TileGeometry geometry(int64_t in_tile, int64_t out_tile) {
  TileGeometry g;
  g.tile = in_tile;
  g.stride = static_cast<int64_t>(static_cast<double>(in_tile) * (1 - kOverlapFactor));
  g.blend = static_cast<int64_t>(static_cast<double>(out_tile) * kOverlapFactor);
  g.keep = out_tile - g.blend;
  // diffusers would fail in range(0, n, 0) here; say why instead.
  SD_CHECK(g.stride > 0 && g.keep > 0, "VAE tiling: sample_size is too small to tile (input tile ", in_tile,
           ", output tile ", out_tile, ")");
  return g;
}

bool exceeds(at::IntArrayRef shape, int64_t edge) {
  SD_CHECK(shape.size() == 4, "VAE tiling: expected a [B, C, H, W] shape, got ", shape);
  return shape[3] > edge || shape[2] > edge;
}

// The type a Python float scalar is applied in: float32 for the reduced float types (PyTorch's
// opmath), the tensor's own type otherwise.
torch::ScalarType scalar_compute_type(torch::ScalarType t) {
  return t == torch::kHalf || t == torch::kBFloat16 ? torch::kFloat : t;
}

// Blends along `dim` (2: rows, 3: columns); see blend_rows.
void blend_along(const torch::Tensor& prev, torch::Tensor& tile, int64_t extent, int64_t dim) {
  const int64_t e = std::min({prev.size(dim), tile.size(dim), extent});
  if (e <= 0) return;
  const auto dtype = tile.scalar_type();
  const auto compute = scalar_compute_type(dtype);
  // diffusers' weights y / e and 1 - y / e, computed in float64 as Python does, then rounded
  // to the compute type as the scalar multiplication rounds them.
  auto ramp = torch::arange(e, torch::TensorOptions().dtype(torch::kDouble)) / static_cast<double>(e);
  std::vector<int64_t> shape{1, 1, 1, 1};
  shape[dim] = e;
  auto w_new = ramp.view(shape).to(tile.device(), compute);
  auto w_old = (1 - ramp).view(shape).to(tile.device(), compute);
  auto head = tile.narrow(dim, 0, e);
  auto prev_end = prev.narrow(dim, prev.size(dim) - e, e);
  // Two roundings to the tensor's type, then their sum: what a[...] * w1 + b[...] * w2 does.
  auto blended = (prev_end.to(compute) * w_old).to(dtype) + (head.to(compute) * w_new).to(dtype);
  head.copy_(blended);
}

using Grid = std::vector<std::vector<torch::Tensor>>;

// diffusers' second loop: tile by tile in row-major order, blend with the (already blended) tile
// above and the tile to the left, crop to keep x keep, and assemble.
torch::Tensor blend_and_assemble(Grid& tiles, const TileGeometry& g) {
  std::vector<torch::Tensor> rows;
  for (size_t i = 0; i < tiles.size(); ++i) {
    std::vector<torch::Tensor> row;
    for (size_t j = 0; j < tiles[i].size(); ++j) {
      auto& tile = tiles[i][j];
      if (i > 0) blend_rows(tiles[i - 1][j], tile, g.blend);
      if (j > 0) blend_columns(tiles[i][j - 1], tile, g.blend);
      row.push_back(tile.narrow(2, 0, std::min(g.keep, tile.size(2))).narrow(3, 0, std::min(g.keep, tile.size(3))));
    }
    rows.push_back(torch::cat(row, 3));
  }
  return torch::cat(rows, 2);
}

// The input tiles of one direction, each mapped by `run`. Each tile is copied out in the input's
// memory format: a narrowed channels-last tensor is no longer channels-last-contiguous, and the
// convolutions would otherwise fall back to their slower contiguous path.
template <class Run>
Grid run_tiles(const torch::Tensor& x, const TileGeometry& g, Run run) {
  const auto format = x.suggest_memory_format();
  Grid grid;
  for (int64_t i = 0; i < x.size(2); i += g.stride) {
    std::vector<torch::Tensor> row;
    for (int64_t j = 0; j < x.size(3); j += g.stride) {
      const int64_t h = std::min(g.tile, x.size(2) - i), w = std::min(g.tile, x.size(3) - j);
      row.push_back(run(x.narrow(2, i, h).narrow(3, j, w).contiguous(format)));
    }
    grid.push_back(std::move(row));
  }
  return grid;
}


int64_t element_size(torch::ScalarType dtype) { return static_cast<int64_t>(c10::elementSize(dtype)); }

}  // namespace

TileGeometry decode_tile_geometry(const VAEConfig& config) {
  return geometry(latent_tile_edge(config), config.sample_size);
}

TileGeometry encode_tile_geometry(const VAEConfig& config) {
  return geometry(config.sample_size, latent_tile_edge(config));
}

bool decode_tiling_applies(const VAEConfig& config, at::IntArrayRef latent_shape) {
  return exceeds(latent_shape, latent_tile_edge(config));
}

bool encode_tiling_applies(const VAEConfig& config, at::IntArrayRef image_shape) {
  return exceeds(image_shape, config.sample_size);
}

void blend_rows(const torch::Tensor& prev, torch::Tensor& tile, int64_t extent) { blend_along(prev, tile, extent, 2); }
void blend_columns(const torch::Tensor& prev, torch::Tensor& tile, int64_t extent) {
  blend_along(prev, tile, extent, 3);
}

torch::Tensor tiled_decode(AutoencoderKLImpl& vae, const torch::Tensor& z) {
  SD_CHECK(z.dim() == 4, "VAE tiled decode: latents must be [B, C, h, w], got ", z.sizes());
  torch::NoGradGuard no_grad;  // blending writes into the decoded tiles
  const auto g = decode_tile_geometry(vae.config);
  auto tiles = run_tiles(z, g, [&](const torch::Tensor& t) { return vae.decode(t); });
  return blend_and_assemble(tiles, g);
}

LatentDistribution tiled_encode(AutoencoderKLImpl& vae, const torch::Tensor& image) {
  SD_CHECK(vae.encoder, "VAE tiled encode: this AutoencoderKL was built without its encoder");
  SD_CHECK(image.dim() == 4 && image.size(1) == vae.config.in_channels, "VAE tiled encode: image must be [B, ",
           vae.config.in_channels, ", H, W], got ", image.sizes());
  torch::NoGradGuard no_grad;
  const auto g = encode_tile_geometry(vae.config);
  // The moments (mean and unclamped logvar) are blended; the distribution is made afterwards.
  auto tiles = run_tiles(image, g, [&](const torch::Tensor& t) { return vae.quant_conv(vae.encoder(t)); });
  return LatentDistribution::from_moments(blend_and_assemble(tiles, g));
}

torch::Tensor decode_maybe_tiled(AutoencoderKLImpl& vae, const torch::Tensor& z) {
  return decode_tiling_applies(vae.config, z.sizes()) ? tiled_decode(vae, z) : vae.decode(z);
}

LatentDistribution encode_maybe_tiled(AutoencoderKLImpl& vae, const torch::Tensor& image) {
  return encode_tiling_applies(vae.config, image.sizes()) ? tiled_encode(vae, image) : vae.encode(image);
}

// The accounting, per batch item, in elements of `dtype` (a feature map of C channels at a level
// of A pixels counts C * A). Each stage's peak is what it holds at its widest point; stages run
// one after another, so the decode's peak is the largest stage's:
//   - post_quant_conv + conv_in: z, post_quant_conv(z), conv_in's output;
//   - ResnetBlock2D (Cin -> Cout): its input (kept for the shortcut), norm1's output, conv1's and
//     conv2's outputs: 2 Cin + 2 Cout;
//   - mid-block attention: input, group norm, q, k, v, output: 6 C; plus, where scores are held,
//     [rows, HW] scores and softmax in fp32 and the probabilities in `dtype`;
//   - Upsample2D: its input, the nearest-neighbour copy and the conv output, both 4x the area;
//   - conv_norm_out + conv_out: the normalized map and the output image.
int64_t estimate_decode_peak_bytes(const VAEConfig& config, at::IntArrayRef latent_shape, torch::ScalarType dtype,
                                   const DecodeMemoryOptions& options) {
  SD_CHECK(latent_shape.size() == 4, "decode memory estimate: expected a [B, C, h, w] shape, got ", latent_shape);
  const auto& ch = config.block_out_channels;
  const size_t n = ch.size();
  SD_CHECK(n >= 1, "decode memory estimate: block_out_channels is empty");
  const double batch = static_cast<double>(latent_shape[0]);
  const double elem = static_cast<double>(element_size(dtype));
  double area = static_cast<double>(latent_shape[2]) * static_cast<double>(latent_shape[3]);
  const double latent_area = area;
  const double top = static_cast<double>(ch[n - 1]);
  const double latent = static_cast<double>(config.latent_channels);

  double peak = (2 * latent + top) * area * elem;  // bytes per batch item from here on
  auto stage = [&](double bytes) { peak = std::max(peak, bytes); };
  auto resnet = [&](double cin, double cout, double a) { stage((2 * cin + 2 * cout) * a * elem); };

  resnet(top, top, area);
  double scores = 0;
  if (options.attention_scores) {
    const double rows =
        options.query_slice > 0 ? std::min(static_cast<double>(options.query_slice), latent_area) : latent_area;
    scores = rows * latent_area * (4 + 4 + elem);
  }
  stage(6 * top * area * elem + scores);
  resnet(top, top, area);

  double cin = top;
  for (size_t i = 0; i < n; ++i) {
    const double cout = static_cast<double>(ch[n - 1 - i]);
    for (int64_t r = 0; r <= config.layers_per_block; ++r) {
      resnet(r == 0 ? cin : cout, cout, area);
    }
    cin = cout;
    if (i + 1 < n) {
      stage(cout * area * (1 + 4 + 4) * elem);
      area *= 4;
    }
  }
  stage((2 * static_cast<double>(ch[0]) + static_cast<double>(config.out_channels)) * area * elem);
  return static_cast<int64_t>(peak * batch);
}

int64_t estimate_tiled_decode_peak_bytes(const VAEConfig& config, at::IntArrayRef latent_shape, torch::ScalarType dtype,
                                         const DecodeMemoryOptions& options) {
  SD_CHECK(latent_shape.size() == 4, "decode memory estimate: expected a [B, C, h, w] shape, got ", latent_shape);
  const auto g = decode_tile_geometry(config);
  const int64_t f = config.downscale_factor();
  const int64_t h = latent_shape[2], w = latent_shape[3];
  const double per_px = static_cast<double>(latent_shape[0] * config.out_channels * element_size(dtype));
  // Every decoded tile is kept until the blending pass, which then assembles the output.
  double tiles = 0;
  for (int64_t i = 0; i < h; i += g.stride) {
    for (int64_t j = 0; j < w; j += g.stride) {
      tiles += static_cast<double>(std::min(g.tile, h - i) * f) * static_cast<double>(std::min(g.tile, w - j) * f);
    }
  }
  const double output = static_cast<double>(h * f) * static_cast<double>(w * f);
  std::vector<int64_t> tile_shape{latent_shape[0], latent_shape[1], std::min(g.tile, h), std::min(g.tile, w)};
  return estimate_decode_peak_bytes(config, tile_shape, dtype, options) +
         static_cast<int64_t>((tiles + output) * per_px);
}

}  // namespace sd
