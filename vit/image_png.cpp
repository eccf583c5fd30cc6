// PNG decoding through stb_image (the one place that defines its implementation), converted to RGB
// as Pillow's convert('RGB') converts each PNG mode: alpha dropped, gray replicated, palette
// expanded, 16-bit channels cut to their high byte, except 16-bit gray (Pillow's "I;16") clipped.
#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "vit/image_decoders.h"

#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#endif
#include <stb_image.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace ivl::image_detail {
namespace {

struct StbPixels {  // owns what stb_image returns
  void* data = nullptr;
  ~StbPixels() { stbi_image_free(data); }
};

uint32_t read_big_endian_32(const uint8_t* bytes) {
  return (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) | (uint32_t{bytes[2]} << 8) | bytes[3];
}

void append_big_endian_32(std::vector<uint8_t>& bytes, uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<uint8_t>(value >> shift));
}

// Pillow reads a PNG whose last bytes are missing (IEND, the last CRC, the end of the zlib stream)
// as long as every row decompresses; stb_image wants whole chunks. For a file that ends inside its
// chunk structure this returns the same bytes closed off: the partial chunk cut to what is there
// (an IDAT keeps its partial data) and an IEND appended. stb then succeeds exactly when all rows
// are present (it checks no CRC). Empty when the structure is complete.
std::vector<uint8_t> close_truncated_png(const uint8_t* bytes, size_t size) {
  size_t at = 8;
  size_t keep = 0;  // bytes of the original to keep
  uint32_t partial_idat_length = 0;
  bool partial_idat = false;
  while (true) {
    if (at + 8 > size) {  // the file ends inside a chunk's length or type
      keep = at;
      break;
    }
    const uint32_t length = read_big_endian_32(bytes + at);
    const bool idat = std::memcmp(bytes + at + 4, "IDAT", 4) == 0;
    if (std::memcmp(bytes + at + 4, "IEND", 4) == 0) return {};
    const uint64_t data_end = uint64_t{at} + 8 + length;
    if (data_end + 4 > size) {  // the file ends inside the data or the CRC
      keep = at;
      partial_idat = idat;
      partial_idat_length = static_cast<uint32_t>(std::min<uint64_t>(data_end, size) - at - 8);
      break;
    }
    at = static_cast<size_t>(data_end + 4);
  }
  std::vector<uint8_t> closed(bytes, bytes + keep);
  if (partial_idat) {
    append_big_endian_32(closed, partial_idat_length);
    closed.insert(closed.end(), {'I', 'D', 'A', 'T'});
    closed.insert(closed.end(), bytes + keep + 8, bytes + keep + 8 + partial_idat_length);
    append_big_endian_32(closed, 0);  // CRC, unchecked
  }
  append_big_endian_32(closed, 0);
  closed.insert(closed.end(), {'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82});
  return closed;
}

}  // namespace

Image decode_png(const uint8_t* bytes, size_t size, const std::string& name) {
  // The IHDR chunk must come first: signature (8), length (4), "IHDR" (4), width, height (4 each),
  // bit depth, colour type (1 each).
  if (size < 33 || std::string(reinterpret_cast<const char*>(bytes) + 12, 4) != "IHDR")
    image_error(name, "corrupt PNG: no IHDR chunk after the signature");
  const int64_t width = read_big_endian_32(bytes + 16);
  const int64_t height = read_big_endian_32(bytes + 20);
  const int bit_depth = bytes[24];
  const int colour_type = bytes[25];
  check_image_size(name, width, height);
  if (size > static_cast<size_t>(std::numeric_limits<int>::max()))
    image_error(name, "PNG files above 2 GiB are not supported");
  const int length = static_cast<int>(size);

  Image image(static_cast<int>(width), static_cast<int>(height));
  int stb_width = 0, stb_height = 0, channels_in_file = 0;
  StbPixels pixels;
  const bool gray16 = colour_type == 0 && bit_depth == 16;
  const auto decode = [&](const uint8_t* data, int data_length) {
    if (gray16) {
      // Pillow opens 16-bit gray as "I;16", and its I;16 -> RGB conversion clips each value to 255
      // (it does not scale by 1/257): stb must give us the 16-bit values themselves.
      return static_cast<void*>(
          stbi_load_16_from_memory(data, data_length, &stb_width, &stb_height, &channels_in_file, 1));
    }
    // stb converts to 3 channels as Pillow does: gray and gray+alpha replicate the gray, RGBA and
    // palettes with transparency drop the alpha, 16-bit keeps the high byte.
    return static_cast<void*>(stbi_load_from_memory(data, data_length, &stb_width, &stb_height, &channels_in_file, 3));
  };
  pixels.data = decode(bytes, length);
  if (pixels.data == nullptr) {
    const std::string reason = stbi_failure_reason() ? stbi_failure_reason() : "no reason given";
    const std::vector<uint8_t> closed = close_truncated_png(bytes, size);
    if (closed.empty()) image_error(name, "corrupt PNG (stb_image: " + reason + ")");
    pixels.data = decode(closed.data(), static_cast<int>(closed.size()));
    if (pixels.data == nullptr) image_error(name, "truncated PNG: the data ends before the image does");
  }
  if (stb_width != width || stb_height != height)
    image_error(name, "corrupt PNG: decoded size differs from the IHDR chunk");

  if (gray16) {
    const auto* gray = static_cast<const uint16_t*>(pixels.data);
    const size_t count = static_cast<size_t>(width) * static_cast<size_t>(height);
    for (size_t i = 0; i < count; ++i) {
      const uint8_t value = gray[i] > 255 ? 255 : static_cast<uint8_t>(gray[i]);
      image.pixels[3 * i] = image.pixels[3 * i + 1] = image.pixels[3 * i + 2] = value;
    }
  } else {
    const auto* rgb = static_cast<const uint8_t*>(pixels.data);
    std::copy(rgb, rgb + image.pixels.size(), image.pixels.begin());
  }
  return image;
}

}  // namespace ivl::image_detail
