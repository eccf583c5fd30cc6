// The official InternVL dynamic tiling (`dynamic_preprocess` and `build_transform`): choose a grid of
// image_size tiles whose aspect ratio is closest to the image's, resize the image to that grid with
// Pillow's bicubic, cut the tiles row-major, append a thumbnail of the whole image, normalise.
#pragma once
#include <cstdint>
#include <vector>

#include "tensor/tensor.h"
#include "vit/image.h"

namespace ivl {

// A grid of `columns` x `rows` tiles (the official code's ratio (i, j) = (columns, rows)).
struct TileGrid {
  int columns = 1;
  int rows = 1;
  int tiles() const { return columns * rows; }
  bool operator==(const TileGrid&) const = default;
};

// The official candidate list: every (columns, rows) with min_tiles <= columns*rows <= max_tiles, in
// the order of Python's `sorted(set(...), key=columns*rows)`. Equal areas keep CPython's set
// iteration order, which is reproduced here (CPython 3.8+ on 64-bit: tuple hash and set probing),
// because it decides exact ties. Throws for min_tiles < 1 or max_tiles < min_tiles.
std::vector<TileGrid> candidate_grids(int min_tiles, int max_tiles);

// The official find_closest_aspect_ratio: the first candidate with the smallest |width/height -
// columns/rows|; a later candidate with an equal difference wins when the image has more than half
// the pixels of its grid (width*height > 0.5 * image_size^2 * columns*rows).
TileGrid choose_grid(int width, int height, const std::vector<TileGrid>& candidates, int image_size);

struct TileOptions {
  int image_size = 448;       // the ViT's input size (force_image_size in the config)
  int min_tiles = 1;
  int max_tiles = 12;         // max_dynamic_patch; the official chat examples use 12
  bool use_thumbnail = true;  // InternVL2 configs set use_thumbnail
};

// The tiles as Pillow images would hold them: grid.tiles() crops, then the thumbnail (the original
// resized to image_size^2) when use_thumbnail and the grid has more than one tile.
std::vector<Image> dynamic_tiles(const Image& image, const TileOptions& options, TileGrid* grid = nullptr);

// ImageNet normalisation as torchvision's ToTensor + Normalize compute it in float32:
// (float(u8) / 255 - mean[c]) / std[c], with the float32 mean and std below.
inline constexpr float kImageNetMean[3] = {0.485f, 0.456f, 0.406f};
inline constexpr float kImageNetStd[3] = {0.229f, 0.224f, 0.225f};
float normalize_pixel(uint8_t value, int channel);

// u8 [n, H, W, 3] (any layout) -> f32 [n, 3, H, W], contiguous.
Tensor normalize_tiles(const Tensor& tiles_u8);

struct PreprocessedImage {
  TileGrid grid;
  Tensor tiles_u8;      // u8 [n, image_size, image_size, 3]
  Tensor pixel_values;  // f32 [n, 3, image_size, image_size]
  int64_t tile_count() const { return tiles_u8.size(0); }
};

// Everything above, for one decoded image: the model's pixel_values in tile order.
PreprocessedImage preprocess_image(const Image& image, const TileOptions& options = {});

}  // namespace ivl
