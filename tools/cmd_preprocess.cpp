// `ivl preprocess --image F [--max-tiles N] [--image-size N] [--no-thumbnail] [--out F.safetensors]`:
// an image as the official InternVL pipeline prepares it: decoded size, chosen grid, tiles and image
// tokens, and optionally the u8 tiles and the normalised pixel_values written as safetensors.
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "nn/safetensors.h"
#include "tools/commands.h"
#include "vit/image.h"
#include "vit/tiles.h"

namespace ivl::cli {
namespace {

int cmd_preprocess(const ParsedFlags& flags) {
  const std::string path = flags.text("--image");
  TileOptions options;
  options.max_tiles = flags.integer("--max-tiles", 1);
  options.image_size = flags.integer("--image-size", 1);
  options.use_thumbnail = !flags.boolean("--no-thumbnail");
  const std::string out_path = flags.text("--out");

  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  const Image image = load_image(path);
  const auto decoded = clock::now();
  const PreprocessedImage result = preprocess_image(image, options);
  const auto done = clock::now();
  const auto milliseconds = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };

  // InternVL2: 14-pixel patches, pixel shuffle 0.5 -> (image_size / 28)^2 tokens per tile (256 at 448).
  const int64_t tokens_per_tile = (options.image_size / 28) * (options.image_size / 28);
  const bool thumbnail = result.tile_count() > result.grid.tiles();
  std::printf("image      %s\n", path.c_str());
  std::printf("decoded    %d x %d (width x height)\n", image.width, image.height);
  std::printf("grid       %d x %d (columns x rows) at max %d tiles\n", result.grid.columns, result.grid.rows,
              options.max_tiles);
  std::printf("tiles      %lld (%d of %dx%d%s)\n", static_cast<long long>(result.tile_count()), result.grid.tiles(),
              options.image_size, options.image_size, thumbnail ? " + thumbnail" : "");
  std::printf("tokens     %lld image tokens (%lld per tile)\n",
              static_cast<long long>(result.tile_count() * tokens_per_tile), static_cast<long long>(tokens_per_tile));
  std::printf("time       decode %.1f ms, tiles + normalise %.1f ms\n", milliseconds(start, decoded),
              milliseconds(decoded, done));
  if (!out_path.empty()) {
    save_safetensors(out_path, {{"tiles_u8", result.tiles_u8}, {"pixel_values", result.pixel_values}},
                     {{"image", path},
                      {"grid_columns_rows", std::to_string(result.grid.columns) + "," + std::to_string(result.grid.rows)},
                      {"max_tiles", std::to_string(options.max_tiles)},
                      {"use_thumbnail", options.use_thumbnail ? "true" : "false"}});
    std::printf("wrote      %s (tiles_u8 u8%s, pixel_values f32%s)\n", out_path.c_str(),
                shape_str(result.tiles_u8.shape()).c_str(), shape_str(result.pixel_values.shape()).c_str());
  }
  return 0;
}

}  // namespace

Command preprocess_command() {
  const TileOptions defaults;  // the table shows the library's defaults, not a copy of them
  return {{"preprocess",
           "an image as the official pipeline tiles it: size, grid, tiles, image tokens",
           {},
           {{"--image", "FILE", "", "a JPEG or PNG image", Flag::required},
            {"--max-tiles", "N", std::to_string(defaults.max_tiles), "the most tiles of the dynamic grid (max_dynamic_patch)"},
            {"--image-size", "N", std::to_string(defaults.image_size), "the tile size in pixels (force_image_size)"},
            {"--no-thumbnail", "", "", "no thumbnail tile after a grid of several tiles"},
            {"--out", "FILE", "", "write tiles_u8 and pixel_values to this .safetensors file"}},
           ""},
          cmd_preprocess};
}

}  // namespace ivl::cli
