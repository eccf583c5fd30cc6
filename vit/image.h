// An 8-bit RGB image and its decoding from JPEG or PNG, giving the pixels that the official
// pipeline's `Image.open(path).convert('RGB')` gives (Pillow on libjpeg-turbo), byte for byte.
// Pillow-exact bicubic resizing and cropping of such images live in vit/image_resize.h.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ivl {

// Row-major height x width x 3 bytes (R, G, B), no padding between rows.
struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;

  Image() = default;
  Image(int width, int height);  // zero-filled

  size_t row_bytes() const { return static_cast<size_t>(width) * 3; }
  uint8_t* row(int y) { return pixels.data() + static_cast<size_t>(y) * row_bytes(); }
  const uint8_t* row(int y) const { return pixels.data() + static_cast<size_t>(y) * row_bytes(); }
};

// Pillow refuses images above twice its MAX_IMAGE_PIXELS (DecompressionBombError); so do we, before
// allocating their pixels.
inline constexpr int64_t kMaxImagePixels = 2 * 89'478'485;

// Reads and decodes the file at `path`. The format comes from the magic bytes, not the extension:
// - JPEG through libjpeg-turbo with Pillow's settings (islow IDCT, fancy upsampling, block
//   smoothing); grayscale replicated, CMYK/YCCK converted as Pillow converts Adobe CMYK.
// - PNG of any colour type and bit depth: alpha dropped (not blended over a background), gray
//   replicated, palettes expanded; 16-bit channels keep their high byte, except 16-bit gray, which
//   Pillow opens as "I;16" and clips to 255 when converting to RGB.
// No EXIF rotation. Truncated, corrupt, empty, oversized or unsupported files throw
// std::runtime_error with a message that names the file.
Image load_image(const std::string& path);

// The same from bytes in memory; `name` only goes into error messages.
Image decode_image(const uint8_t* bytes, size_t size, const std::string& name);

}  // namespace ivl
