// The official dynamic tiling (see tiles.h). The candidate order comes from CPython's set of tuples,
// emulated below so that any max_tiles gives the list Python gives; the rest follows
// dynamic_preprocess line by line.
#include "vit/tiles.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "vit/image_resize.h"

namespace ivl {
namespace {

// hash((a, b)) for small non-negative ints on 64-bit CPython 3.8+ (the xxHash-based tuplehash;
// hash(n) == n for such ints).
uint64_t python_pair_hash(uint64_t a, uint64_t b) {
  constexpr uint64_t kPrime1 = 11400714785074694791ULL;
  constexpr uint64_t kPrime2 = 14029467366897019727ULL;
  constexpr uint64_t kPrime5 = 2870177450012600261ULL;
  uint64_t accumulator = kPrime5;
  for (uint64_t lane : {a, b}) {
    accumulator += lane * kPrime2;
    accumulator = std::rotl(accumulator, 31);
    accumulator *= kPrime1;
  }
  accumulator += 2 ^ (kPrime5 ^ 3527539ULL);  // the tuple's length
  if (accumulator == std::numeric_limits<uint64_t>::max()) return 1546275796;  // -1 is reserved
  return accumulator;
}

// CPython's set of (columns, rows) tuples (Objects/setobject.c): open addressing from hash & mask,
// 9 linear probes, then perturbed jumps; the table grows 4x once it is 60% full, re-inserting in
// table order. Iterating a set walks the table, which is what this reproduces.
class PythonSetOfPairs {
 public:
  void add(TileGrid key) {
    const uint64_t hash = python_pair_hash(static_cast<uint64_t>(key.columns), static_cast<uint64_t>(key.rows));
    size_t mask = slots_.size() - 1;
    size_t i = hash & mask;
    uint64_t perturb = hash;
    while (true) {
      size_t probes = i + kLinearProbes <= mask ? kLinearProbes : 0;
      for (size_t j = i;; ++j) {
        Slot& slot = slots_[j];
        if (!slot.used) {
          slot = {true, hash, key};
          ++count_;
          if (count_ * 5 >= mask * 3) grow(count_ > 50000 ? count_ * 2 : count_ * 4);
          return;
        }
        if (slot.hash == hash && slot.key == key) return;  // already present
        if (probes-- == 0) break;
      }
      perturb >>= kPerturbShift;
      i = (i * 5 + 1 + perturb) & mask;
    }
  }

  std::vector<TileGrid> in_iteration_order() const {
    std::vector<TileGrid> keys;
    for (const Slot& slot : slots_)
      if (slot.used) keys.push_back(slot.key);
    return keys;
  }

 private:
  static constexpr size_t kLinearProbes = 9;
  static constexpr int kPerturbShift = 5;
  struct Slot {
    bool used = false;
    uint64_t hash = 0;
    TileGrid key;
  };

  // set_table_resize: the smallest power of two above `minimum_used` (at least 8), then
  // set_insert_clean of every entry in old table order.
  void grow(size_t minimum_used) {
    size_t size = 8;
    while (size <= minimum_used) size <<= 1;
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(size, Slot{});
    const size_t mask = size - 1;
    for (const Slot& entry : old) {
      if (!entry.used) continue;
      size_t i = entry.hash & mask;
      uint64_t perturb = entry.hash;
      while (true) {
        size_t found = SIZE_MAX;
        if (!slots_[i].used) {
          found = i;
        } else if (i + kLinearProbes <= mask) {
          for (size_t j = i + 1; j <= i + kLinearProbes; ++j)
            if (!slots_[j].used) {
              found = j;
              break;
            }
        }
        if (found != SIZE_MAX) {
          slots_[found] = entry;
          break;
        }
        perturb >>= kPerturbShift;
        i = (i * 5 + 1 + perturb) & mask;
      }
    }
  }

  std::vector<Slot> slots_ = std::vector<Slot>(8);
  size_t count_ = 0;  // fill == used: nothing is ever removed
};

}  // namespace

std::vector<TileGrid> candidate_grids(int min_tiles, int max_tiles) {
  if (min_tiles < 1 || max_tiles < min_tiles)
    throw std::invalid_argument("candidate_grids: need 1 <= min_tiles <= max_tiles, got min_tiles " +
                                std::to_string(min_tiles) + ", max_tiles " + std::to_string(max_tiles));
  if (max_tiles > 10000)
    throw std::invalid_argument("candidate_grids: max_tiles " + std::to_string(max_tiles) + " is unreasonably large");
  // set((i, j) for n in range(min_num, max_num + 1) for i in range(1, n + 1) for j in range(1, n + 1)
  //     if i * j <= max_num and i * j >= min_num), inserted in the generator's order.
  PythonSetOfPairs set;
  for (int n = min_tiles; n <= max_tiles; ++n)
    for (int i = 1; i <= n; ++i)
      for (int j = 1; j <= n; ++j)
        if (i * j <= max_tiles && i * j >= min_tiles) set.add({i, j});
  std::vector<TileGrid> grids = set.in_iteration_order();
  std::stable_sort(grids.begin(), grids.end(), [](TileGrid a, TileGrid b) { return a.tiles() < b.tiles(); });
  return grids;
}

TileGrid choose_grid(int width, int height, const std::vector<TileGrid>& candidates, int image_size) {
  if (width < 1 || height < 1) throw std::invalid_argument("choose_grid: empty image");
  const double aspect_ratio = static_cast<double>(width) / height;
  const double area = static_cast<double>(width) * height;  // exact below 2^53
  double best_difference = std::numeric_limits<double>::infinity();
  TileGrid best{1, 1};
  for (const TileGrid& grid : candidates) {
    const double difference = std::abs(aspect_ratio - static_cast<double>(grid.columns) / grid.rows);
    if (difference < best_difference) {
      best_difference = difference;
      best = grid;
    } else if (difference == best_difference &&
               area > 0.5 * image_size * image_size * grid.columns * grid.rows) {
      best = grid;
    }
  }
  return best;
}

std::vector<Image> dynamic_tiles(const Image& image, const TileOptions& options, TileGrid* grid_out) {
  if (options.image_size < 1) throw std::invalid_argument("dynamic_tiles: image_size must be positive");
  const int size = options.image_size;
  const TileGrid grid =
      choose_grid(image.width, image.height, candidate_grids(options.min_tiles, options.max_tiles), size);
  if (grid_out) *grid_out = grid;
  const Image resized = resize_bicubic(image, size * grid.columns, size * grid.rows);
  std::vector<Image> tiles;
  for (int k = 0; k < grid.tiles(); ++k)
    tiles.push_back(crop(resized, (k % grid.columns) * size, (k / grid.columns) * size, size, size));
  if (options.use_thumbnail && tiles.size() != 1) tiles.push_back(resize_bicubic(image, size, size));
  return tiles;
}

float normalize_pixel(uint8_t value, int channel) {
  // Two float32 roundings, as torch does them: ToTensor's x / 255, then Normalize's (x - m) / s.
  const float unit = static_cast<float>(value) / 255.0f;
  return (unit - kImageNetMean[channel]) / kImageNetStd[channel];
}

Tensor normalize_tiles(const Tensor& tiles_u8) {
  if (tiles_u8.dtype() != DType::u8 || tiles_u8.dim() != 4 || tiles_u8.size(3) != 3)
    throw std::invalid_argument("normalize_tiles: expected u8 [n, H, W, 3], got " + tiles_u8.str());
  const Tensor tiles = tiles_u8.contiguous();
  const int64_t n = tiles.size(0), height = tiles.size(1), width = tiles.size(2), plane = height * width;
  float table[3][256];  // every value the formula can take
  for (int c = 0; c < 3; ++c)
    for (int v = 0; v < 256; ++v) table[c][v] = normalize_pixel(static_cast<uint8_t>(v), c);
  Tensor out = Tensor::empty({n, 3, height, width}, DType::f32);
  const uint8_t* in = tiles.data<uint8_t>();
  float* values = out.data<float>();
  for (int64_t t = 0; t < n; ++t) {
    const uint8_t* tile = in + t * plane * 3;
    float* planes = values + t * 3 * plane;
    for (int64_t p = 0; p < plane; ++p)
      for (int c = 0; c < 3; ++c) planes[c * plane + p] = table[c][tile[3 * p + c]];
  }
  return out;
}

PreprocessedImage preprocess_image(const Image& image, const TileOptions& options) {
  PreprocessedImage result;
  const std::vector<Image> tiles = dynamic_tiles(image, options, &result.grid);
  const int64_t size = options.image_size;
  result.tiles_u8 = Tensor::empty({static_cast<int64_t>(tiles.size()), size, size, 3}, DType::u8);
  uint8_t* out = result.tiles_u8.data<uint8_t>();
  for (const Image& tile : tiles) {
    std::memcpy(out, tile.pixels.data(), tile.pixels.size());
    out += tile.pixels.size();
  }
  result.pixel_values = normalize_tiles(result.tiles_u8);
  return result;
}

}  // namespace ivl
