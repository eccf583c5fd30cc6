// Images in, pixel_values out, as the official InternVL pipeline makes them: decoding against Pillow
// (fixtures and embedded samples), the bicubic resize against Pillow's bytes, the candidate grids
// and their choice, every tile of the preprocessing fixtures, crafted bad files, and `ivl preprocess`.
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "nn/safetensors.h"
#include "tests/catch.h"
#include "tests/test_support.h"
#include "tests/image_test_data.h"
#include "tests/sha256.h"
#include "vit/image.h"
#include "vit/image_resize.h"
#include "vit/tiles.h"

using namespace ivl;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const std::string kSharedDirectory = IVL_SHARED_DIR;
const std::string kPreprocessDirectory = kSharedDirectory + "/fixtures/preprocess/";
const std::string kPreprocessRealDirectory = kSharedDirectory + "/fixtures/preprocess_real/";
const std::string kImagesDirectory = kSharedDirectory + "/assets/images/";

std::string sha256(const uint8_t* data, size_t size) { return test::sha256_hex(data, size); }
std::string sha256(const std::vector<uint8_t>& bytes) { return sha256(bytes.data(), bytes.size()); }

std::vector<uint8_t> from_hex(const std::string& hex) {
  std::vector<uint8_t> bytes(hex.size() / 2);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  return bytes;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream file(path, std::ios::binary);
  file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}


// The patterns the resize expectations were made from (with Pillow, in Python).
Image pattern_image(const std::string& kind, int width, int height) {
  Image image(width, height);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < 3; ++c)
        image.row(y)[3 * x + c] = static_cast<uint8_t>(
            kind == "gradient" ? (x * 37 + y * 91 + c * 53 + ((x * y) % 7) * 19) % 256 : ((x + y + c) % 2) * 255);
  return image;
}

std::string grids_text(const std::vector<TileGrid>& grids) {
  std::string text;
  for (const TileGrid& grid : grids) {
    if (!text.empty()) text += ' ';
    text += std::to_string(grid.columns);
    text += ',';
    text += std::to_string(grid.rows);
  }
  return text;
}

// Every `step`-th row and column of u8 [..., H, W, 3] pixels, as numpy's a[..., ::step, ::step, :].
std::vector<uint8_t> subsample(const uint8_t* pixels, int64_t count, int64_t height, int64_t width, int64_t step) {
  std::vector<uint8_t> out;
  for (int64_t n = 0; n < count; ++n)
    for (int64_t y = 0; y < height; y += step)
      for (int64_t x = 0; x < width; x += step)
        for (int64_t c = 0; c < 3; ++c) out.push_back(pixels[((n * height + y) * width + x) * 3 + c]);
  return out;
}

double mean_absolute_difference(const std::vector<uint8_t>& a, const Tensor& expected) {
  REQUIRE(static_cast<int64_t>(a.size()) == expected.numel());
  const Tensor b = expected.contiguous();
  const uint8_t* data = b.data<uint8_t>();
  double total = 0;
  for (size_t i = 0; i < a.size(); ++i) total += std::abs(static_cast<int>(a[i]) - static_cast<int>(data[i]));
  return total / static_cast<double>(a.size());
}


}  // namespace

TEST_CASE("candidate grids come in the order of Python's sorted(set(...))", "[image]") {
  // The spec's lists, observed on CPython 3.11.
  CHECK(grids_text(candidate_grids(1, 6)) == "1,1 1,2 2,1 3,1 1,3 4,1 1,4 2,2 1,5 5,1 6,1 2,3 1,6 3,2");
  CHECK(grids_text(candidate_grids(1, 12)) ==
        "1,1 1,2 2,1 3,1 1,3 2,2 4,1 1,4 5,1 1,5 1,6 6,1 3,2 2,3 7,1 1,7 4,2 2,4 1,8 8,1 1,9 3,3 9,1 2,5 5,2 "
        "10,1 1,10 11,1 1,11 12,1 3,4 4,3 1,12 6,2 2,6");
  // Two more printed by CPython 3.11, where the table has grown past its first sizes.
  CHECK(grids_text(candidate_grids(1, 20)) ==
        "1,1 1,2 2,1 3,1 1,3 2,2 4,1 1,4 5,1 1,5 1,6 6,1 3,2 2,3 7,1 1,7 4,2 2,4 1,8 8,1 1,9 3,3 9,1 2,5 5,2 "
        "10,1 1,10 11,1 1,11 12,1 3,4 4,3 1,12 6,2 2,6 13,1 1,13 14,1 2,7 1,14 7,2 1,15 5,3 15,1 3,5 1,16 2,8 "
        "16,1 8,2 4,4 1,17 17,1 9,2 1,18 18,1 3,6 2,9 6,3 1,19 19,1 5,4 20,1 4,5 10,2 2,10 1,20");
  CHECK(grids_text(candidate_grids(3, 8)) == "3,1 1,3 4,1 1,4 2,2 1,5 5,1 6,1 2,3 1,6 3,2 7,1 1,7 2,4 1,8 8,1 4,2");
  CHECK_THROWS_WITH(candidate_grids(0, 6), HasSubstr("min_tiles"));
  CHECK_THROWS_WITH(candidate_grids(5, 4), HasSubstr("max_tiles"));
}

TEST_CASE("grid choice on the spec's worked examples", "[image]") {
  struct Example {
    int width, height;
    TileGrid at12, at6;
  };
  const Example examples[] = {
      {448, 448, {1, 1}, {1, 1}},   {800, 600, {4, 3}, {3, 2}},  {1000, 1000, {3, 3}, {2, 2}},
      {1920, 1080, {4, 2}, {2, 1}}, {400, 1000, {2, 5}, {1, 3}},
      // Equal ratios (1,1), (2,2), (3,3): a larger grid only with more than half its pixels.
      {500, 500, {1, 1}, {1, 1}},   {700, 700, {2, 2}, {2, 2}},
  };
  for (const Example& e : examples) {
    INFO(e.width << "x" << e.height);
    CHECK(choose_grid(e.width, e.height, candidate_grids(1, 12), 448) == e.at12);
    CHECK(choose_grid(e.width, e.height, candidate_grids(1, 6), 448) == e.at6);
  }
  // Tile counts and tokens of the table: a thumbnail joins every grid of more than one tile.
  const auto tiles = [](int width, int height, int max_tiles) {
    TileOptions options;
    options.max_tiles = max_tiles;
    return static_cast<int64_t>(dynamic_tiles(pattern_image("gradient", width, height), options).size());
  };
  CHECK(tiles(800, 600, 12) * 256 == 3328);
  CHECK(tiles(800, 600, 6) * 256 == 1792);
  CHECK(tiles(1000, 1000, 12) * 256 == 2560);
  CHECK(tiles(1000, 1000, 6) * 256 == 1280);
  CHECK(tiles(1920, 1080, 12) == 9);
  CHECK(tiles(1920, 1080, 6) == 3);
  CHECK(tiles(400, 1000, 12) == 11);
  CHECK(tiles(400, 1000, 6) == 4);

  // 448x448: one tile, no thumbnail, and the tile is the image itself (Pillow copies same-size resizes).
  const Image square = pattern_image("gradient", 448, 448);
  const PreprocessedImage result = preprocess_image(square, {});
  CHECK(result.grid == TileGrid{1, 1});
  CHECK(result.tile_count() == 1);
  CHECK(std::memcmp(result.tiles_u8.data<uint8_t>(), square.pixels.data(), square.pixels.size()) == 0);
  TileOptions no_thumbnail;
  no_thumbnail.use_thumbnail = false;
  CHECK(preprocess_image(pattern_image("gradient", 800, 600), no_thumbnail).tile_count() == 12);
}

TEST_CASE("bicubic resize is byte-identical to Pillow's", "[image]") {
  // Expected bytes from Pillow (Resample.c order: the horizontal pass, then the vertical one).
  struct Case {
    const char* kind;
    int width, height, out_width, out_height;
    const char* expected_hex;
  };
  const Case cases[] = {
      {"gradient", 5, 4, 11, 9,  // both axes up
       "002a5f0030650b3f741d54892c70a53e8bc0599dd275abe08abdf299ceff9fd4ff093b730e437b21598f376a9e4b6ca05a6fa45e7fb5"
       "6093ca70a7de85baf08dc2f52d60a93870b55799d477a2d6996194a1295e6932702953992e70b1538ac26095c85c91bd659ecc7cc2f4"
       "97bcf1c1578dca0136740a3b0f34610a518030699d3f74aaa0d56d8dc57c62a0a14c78b36f549a8c417671564b49762e43815b4a81a4"
       "4c82c2c8fd1c9fd42c3f744e0235751d51a54d80b574a76190c50784b93e659aad598fda84b9306fa5433d776e24539048499b76588d"
       "979945a9d80184bf314b80903768b61f54662b637c458ab3698fc799428bbd1247c16a1eaed50c6eb33021596b0a3683002b7a104892"
       "4891ce83a7dcb93e84d9002bd3590eb1d50f66af2e11495b00216e"},
      {"gradient", 13, 11, 4, 3,  // both down: the kernel widens (antialiasing)
       "6074897e8f7675736c718d6d8d886c815164877b778d4e608285847873867d7b8c836982"},
      {"checker", 7, 9, 10, 4,  // width up, height down; black/white overshoots clip to 0..255
       "6f906f837c838b748b6f906f8778878778876f906f8b748b837c836f906f817e817f807f7f807f817e817f807f7f807f817e817f807f"
       "7f807f817e81817e817f807f7f807f817e817f807f7f807f817e817f807f7f807f817e816f906f837c838b748b6f906f877887877887"
       "6f906f8b748b837c836f906f"},
      {"checker", 9, 6, 4, 13,  // width down, height up
       "6c936c817e81817e816c936c748b74817e81817e81748b748778877f807f7f807f8778878f708f7e817e7e817e8f708f7c837c807f80"
       "807f807c837c6f906f817e81817e816f906f808080808080808080808080906f907e817e7e817e906f90837c837f807f7f807f837c83"
       "708f70817e81817e81708f70788778807f80807f807887788b748b7e817e7e817e8b748b936c937e817e7e817e936c93"},
      {"gradient", 10, 3, 4, 3,  // horizontal pass only
       "1e538b7db6ce9e70532b59968c83b84a47807bbe899f7a3c52875e6fa86ac193414b7877"},
      {"gradient", 3, 10, 3, 17,  // vertical pass only
       "002e631d52874089be1a4f8f4f84b97a5085588dc693c8fdcb00359fd4653e73a8804c81a9de20033b705379b031665c4b93c8ae0f56"
       "1b50a29c7fb4da45286398d7dd164bcef42eaadf8494397e81d67bc1f6304c8ab14c72b24d826596d452a20d5e2863abc0f511d73128"
       "6db0e7ade207cfe829b36da25c91338ad06fd70c4110457d487db26d43785489c899ce62266fa486bbf0d3ff29"},
  };
  for (const Case& c : cases) {
    INFO(c.kind << " " << c.width << "x" << c.height << " -> " << c.out_width << "x" << c.out_height);
    const Image resized = resize_bicubic(pattern_image(c.kind, c.width, c.height), c.out_width, c.out_height);
    CHECK(resized.width == c.out_width);
    CHECK(resized.height == c.out_height);
    CHECK(resized.pixels == from_hex(c.expected_hex));
  }
  // Larger ones by digest: a thumbnail-sized upscale, a downscale, and a tall image's thumbnail.
  CHECK(sha256(resize_bicubic(pattern_image("gradient", 37, 23), 448, 448).pixels) ==
        "7609be609026a2ce3144666801da13390b016938d53800fd0af5891a8c51b72f");
  CHECK(sha256(resize_bicubic(pattern_image("gradient", 517, 333), 100, 61).pixels) ==
        "ce1140461983115f36bfebf79a90d3f8650ec3aa91b025eddcae40c5837d501f");
  CHECK(sha256(resize_bicubic(pattern_image("checker", 300, 1000), 448, 448).pixels) ==
        "1c53d2210e99a592a2cb5e858d10092cda3892509471ced403c946a1568c3a52");

  const Image same = pattern_image("gradient", 6, 5);
  CHECK(resize_bicubic(same, 6, 5).pixels == same.pixels);
  CHECK_THROWS_WITH(resize_bicubic(same, 0, 5), HasSubstr("at least 1x1"));
  CHECK_THROWS_WITH(resize_bicubic(Image(), 4, 4), HasSubstr("empty"));
  const Image cropped = crop(same, 2, 1, 3, 2);
  REQUIRE(cropped.pixels.size() == 3 * 2 * 3);
  CHECK(std::equal(cropped.row(0), cropped.row(0) + 9, same.row(1) + 6));
  CHECK(std::equal(cropped.row(1), cropped.row(1) + 9, same.row(2) + 6));
  CHECK_THROWS_WITH(crop(same, 4, 0, 3, 1), HasSubstr("not inside"));
}

TEST_CASE("pixel_values use torchvision's float32 arithmetic", "[image]") {
  // SHA-256 of the 3 x 256 float32 values torch computes for ToTensor + Normalize
  // (x.to(float32).div(255), then .sub_(mean).div_(std) with float32 mean and std), little-endian.
  std::vector<float> table;
  for (int c = 0; c < 3; ++c)
    for (int v = 0; v < 256; ++v) table.push_back(normalize_pixel(static_cast<uint8_t>(v), c));
  CHECK(sha256(reinterpret_cast<const uint8_t*>(table.data()), table.size() * sizeof(float)) ==
        "1d8b9af12b7b391827f7c801265239e21435c7e29b4d78c6189a35e437633897");
  CHECK(normalize_pixel(0, 0) == -0x1.0f177ap+1f);
  CHECK(normalize_pixel(255, 0) == 0x1.1fdc3ap+1f);
  CHECK(normalize_pixel(128, 1) == 0x1.a4369p-3f);
  CHECK(normalize_pixel(37, 2) == -0x1.28d932p+0f);

  // Layout: u8 [n, H, W, 3] -> f32 [n, 3, H, W].
  std::vector<uint8_t> bytes(2 * 2 * 3 * 3);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 7);
  const Tensor values = normalize_tiles(Tensor::from_vector(bytes, {2, 2, 3, 3}));
  REQUIRE(values.shape() == Shape{2, 3, 2, 3});
  const float* v = values.data<float>();
  for (int n = 0; n < 2; ++n)
    for (int c = 0; c < 3; ++c)
      for (int p = 0; p < 6; ++p) CHECK(v[(n * 3 + c) * 6 + p] == normalize_pixel(bytes[static_cast<size_t>((n * 6 + p) * 3 + c)], c));
  CHECK_THROWS_WITH(normalize_tiles(Tensor::zeros({1, 4, 4, 3})), HasSubstr("u8"));
}

TEST_CASE("synthetic fixtures: every tile equals the official pipeline's", "[image]") {
  const json meta = json::parse(read_file(kPreprocessDirectory + "meta.json"));
  const SafetensorsFile golden(kPreprocessDirectory + "pixel_values.safetensors");
  int images_checked = 0;
  const std::vector<std::string> files = {"small.png", "tall.png", "wide.jpg", "wide.png"};
  for (const std::string& file : files) {
    INFO(file);
    const std::string key = file + ".tiles_u8";
    REQUIRE(golden.contains(key));
    TileOptions options;
    options.max_tiles = meta.at("max_num").at(file.substr(0, file.find('.'))).get<int>();
    const PreprocessedImage result = preprocess_image(load_image(kPreprocessDirectory + file), options);
    const Tensor expected = golden.get(key);
    REQUIRE(result.tiles_u8.shape() == expected.shape());
    const size_t tile_bytes = 448 * 448 * 3;
    for (size_t t = 0; t < static_cast<size_t>(expected.size(0)); ++t) {
      INFO("tile " << t);
      CHECK(std::memcmp(result.tiles_u8.data<uint8_t>() + t * tile_bytes, expected.data<uint8_t>() + t * tile_bytes,
                        tile_bytes) == 0);
    }
    // pixel_values against the formula written out here, element by element.
    REQUIRE(result.pixel_values.shape() == Shape{expected.size(0), 3, 448, 448});
    const uint8_t* u8 = expected.data<uint8_t>();
    const float* values = result.pixel_values.data<float>();
    const float mean[3] = {0.485f, 0.456f, 0.406f}, deviation[3] = {0.229f, 0.224f, 0.225f};
    int64_t mismatches = 0;
    for (int64_t t = 0; t < expected.size(0); ++t)
      for (int c = 0; c < 3; ++c)
        for (int64_t p = 0; p < 448 * 448; ++p) {
          const float unit = static_cast<float>(u8[(t * 448 * 448 + p) * 3 + c]) / 255.0f;
          mismatches += values[(t * 3 + c) * 448 * 448 + p] != (unit - mean[c]) / deviation[c];
        }
    CHECK(mismatches == 0);
    ++images_checked;
  }
  CHECK(images_checked == 4);
}

TEST_CASE("real photos: decoded pixels, grids and tiles equal Pillow's", "[image]") {
  const json dev = json::parse(read_file(kPreprocessRealDirectory + "preprocess_dev.json"));
  const SafetensorsFile samples(kPreprocessRealDirectory + "preprocess_dev.safetensors");
  REQUIRE(dev.size() == 8);
  double worst_mean_difference = 0;
  for (const auto& [file, expected] : dev.items()) {
    INFO(file);
    const Image image = load_image(kImagesDirectory + file);
    CHECK(image.width == expected.at("width").get<int>());
    CHECK(image.height == expected.at("height").get<int>());
    const double decoded_difference = mean_absolute_difference(
        subsample(image.pixels.data(), 1, image.height, image.width, 5), samples.get(file + ".decoded_sub"));
    worst_mean_difference = std::max(worst_mean_difference, decoded_difference);
    CHECK(decoded_difference <= 0.5);
    // libjpeg-turbo with Pillow's settings gives Pillow's bytes exactly, for every file here.
    CHECK(sha256(image.pixels) == expected.at("decoded_sha256").get<std::string>());

    for (int max_tiles : {6, 12}) {
      INFO("max " << max_tiles);
      const json& at = expected.at("max" + std::to_string(max_tiles));
      TileOptions options;
      options.max_tiles = max_tiles;
      const PreprocessedImage result = preprocess_image(image, options);
      CHECK(result.grid == TileGrid{at.at("grid_cols_rows")[0].get<int>(), at.at("grid_cols_rows")[1].get<int>()});
      REQUIRE(result.tile_count() == at.at("tiles").get<int64_t>());
      const double tiles_difference =
          mean_absolute_difference(subsample(result.tiles_u8.data<uint8_t>(), result.tile_count(), 448, 448, 7),
                                   samples.get(file + ".max" + std::to_string(max_tiles) + ".tiles_sub"));
      worst_mean_difference = std::max(worst_mean_difference, tiles_difference);
      CHECK(tiles_difference <= 0.5);
      for (int64_t t = 0; t < result.tile_count(); ++t) {
        INFO("tile " << t);
        CHECK(sha256(result.tiles_u8.data<uint8_t>() + t * 448 * 448 * 3, 448 * 448 * 3) ==
              at.at("tile_sha256")[static_cast<size_t>(t)].get<std::string>());
      }
    }
  }
  CHECK(worst_mean_difference == 0.0);  // bit-identical today; the 0.5 bound above is the contract

  const SafetensorsFile full(kPreprocessRealDirectory + "red_panda_full.safetensors");
  const Image panda = load_image(kImagesDirectory + "internvl_image1_red_panda.jpg");
  const Tensor decoded = full.get("decoded");
  REQUIRE(decoded.shape() == Shape{panda.height, panda.width, 3});
  CHECK(std::memcmp(decoded.data<uint8_t>(), panda.pixels.data(), panda.pixels.size()) == 0);
  TileOptions six;
  six.max_tiles = 6;
  const PreprocessedImage panda_tiles = preprocess_image(panda, six);
  const Tensor expected_tiles = full.get("max6.tiles_u8");
  REQUIRE(panda_tiles.tiles_u8.shape() == expected_tiles.shape());
  CHECK(std::memcmp(panda_tiles.tiles_u8.data<uint8_t>(), expected_tiles.data<uint8_t>(), expected_tiles.nbytes()) == 0);
}

TEST_CASE("JPEG and PNG modes decode as Pillow's convert('RGB')", "[image]") {
  for (const test::EncodedImageSample& sample : test::kEncodedImageSamples) {
    INFO(sample.name << " (Pillow mode " << sample.pillow_mode << ")");
    const std::vector<uint8_t> bytes = from_hex(sample.file_hex);
    const Image image = decode_image(bytes.data(), bytes.size(), sample.name);
    CHECK(image.width == sample.width);
    CHECK(image.height == sample.height);
    CHECK(sha256(image.pixels) == sample.decoded_sha256);
  }
}

TEST_CASE("bad image files end in a clear error naming the file", "[image]") {
  TemporaryDirectory directory;
  const std::string jpeg = read_file(kImagesDirectory + "internvl_image3_cats.jpg");
  const std::string png = read_file(kPreprocessDirectory + "small.png");
  REQUIRE(jpeg.size() > 1000);
  REQUIRE(png.size() > 1000);
  std::string random_bytes(4096, '\0');
  std::mt19937 generator(7);
  for (char& byte : random_bytes) byte = static_cast<char>(generator() & 0xff);
  random_bytes[0] = 'R';  // not by chance a JPEG or PNG signature

  struct Bad {
    const char* name;
    std::string bytes;
    const char* says;
  };
  const Bad bad_files[] = {
      {"empty.jpg", "", "empty"},
      {"half.jpg", jpeg.substr(0, jpeg.size() / 2), "truncated JPEG"},
      {"no_end.jpg", jpeg.substr(0, jpeg.size() - 2), "truncated JPEG"},
      {"header_only.jpg", jpeg.substr(0, 300), "JPEG"},
      {"half.png", png.substr(0, png.size() / 2), "truncated PNG"},
      {"signature_only.png", png.substr(0, 8), "PNG"},
      {"random.bin", random_bytes, "not a JPEG or PNG"},
      {"notes.jpg", "this is a text file, not a picture\n", "not a JPEG or PNG"},
      {"animation.gif", "GIF89a\x01\x00\x01\x00", "unsupported image format GIF"},
      {"photo.webp", std::string("RIFF\x10\x00\x00\x00WEBPVP8 ", 16), "unsupported image format WebP"},
  };
  for (const Bad& bad : bad_files) {
    INFO(bad.name);
    const std::string path = directory.file(bad.name);
    write_file(path, bad.bytes);
    CHECK_THROWS_WITH(load_image(path), HasSubstr(path) && HasSubstr(bad.says));
  }
  CHECK_THROWS_WITH(load_image(directory.file("missing.png")), HasSubstr("missing.png") && HasSubstr("cannot open"));

  // What Pillow still reads, we read too, with the same pixels: a PNG without its IEND chunk, or
  // without the last IDAT's CRC and the zlib checksum (every row is there).
  const Image whole_png = load_image(kPreprocessDirectory + "small.png");
  for (size_t missing : {size_t{12}, size_t{20}}) {
    INFO("PNG without its last " << missing << " bytes");
    const std::string path = directory.file("short.png");
    write_file(path, png.substr(0, png.size() - missing));
    CHECK(load_image(path).pixels == whole_png.pixels);
  }
  CHECK_THROWS_WITH(load_image(directory.path.string()), HasSubstr("directory"));

  // Damaged copies (bytes overwritten, or cut anywhere) either decode or throw runtime_error that
  // names the file: never a crash, an exit, or another exception type.
  int decoded = 0, refused = 0;
  for (int trial = 0; trial < 120; ++trial) {
    std::string bytes = trial % 2 ? png : read_file(kPreprocessDirectory + "small.jpg");
    if (trial % 3 == 0) {
      bytes.resize(static_cast<size_t>(generator() % bytes.size()));
    } else {
      for (int k = 0; k < 1 + trial % 5; ++k)
        bytes[8 + generator() % (bytes.size() - 8)] = static_cast<char>(generator() & 0xff);
    }
    try {
      decode_image(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "damaged");
      ++decoded;
    } catch (const std::runtime_error& error) {
      CHECK_THAT(std::string(error.what()), HasSubstr("image 'damaged'"));
      ++refused;
    }
  }
  CHECK(refused > 0);
  CHECK(decoded + refused == 120);
}

TEST_CASE("ivl preprocess prints the grid and writes tiles and pixel_values", "[image]") {
  TemporaryDirectory directory;
  const std::string binary = IVL_BINARY;
  const std::string out = directory.file("wide.safetensors");
  const auto [text, code] = run_command("'" + binary + "' preprocess --image '" + kPreprocessDirectory +
                                        "wide.png' --max-tiles 6 --out '" + out + "'");
  INFO(text);
  REQUIRE(code == 0);
  CHECK_THAT(text, HasSubstr("517 x 333"));
  CHECK_THAT(text, HasSubstr("3 x 2 (columns x rows)"));
  CHECK_THAT(text, HasSubstr("tiles      7 (6 of 448x448 + thumbnail)"));
  CHECK_THAT(text, HasSubstr("1792 image tokens"));
  const SafetensorsFile written(out);
  const Tensor tiles = written.get("tiles_u8");
  const Tensor expected = SafetensorsFile(kPreprocessDirectory + "pixel_values.safetensors").get("wide.png.tiles_u8");
  REQUIRE(tiles.shape() == expected.shape());
  CHECK(std::memcmp(tiles.data<uint8_t>(), expected.data<uint8_t>(), expected.nbytes()) == 0);
  const Tensor values = written.get("pixel_values");
  CHECK(values.dtype() == DType::f32);
  CHECK(values.shape() == Shape{7, 3, 448, 448});

  const auto [single, single_code] = run_command("'" + binary + "' preprocess --image '" + kPreprocessDirectory +
                                                 "wide.png' --max-tiles 6 --no-thumbnail");
  CHECK(single_code == 0);
  CHECK_THAT(single, HasSubstr("tiles      6 (6 of 448x448)"));

  const std::string bad = directory.file("bad.jpg");
  write_file(bad, "not an image");
  const auto [error, error_code] = run_command("'" + binary + "' preprocess --image '" + bad + "'");
  CHECK(error_code != 0);
  CHECK_THAT(error, HasSubstr("bad.jpg"));
  const auto [usage, usage_code] = run_command("'" + binary + "' preprocess --max-tiles x");
  CHECK(usage_code != 0);
  CHECK_THAT(usage, HasSubstr("--image"));
}
