// The per-format decoders behind decode_image (vit/image.h); internal to vit/. Each takes the whole
// file in memory, returns RGB pixels as Pillow's convert('RGB') gives them, and throws
// std::runtime_error naming `name` on any defect.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "vit/image.h"

namespace ivl::image_detail {

Image decode_jpeg(const uint8_t* bytes, size_t size, const std::string& name);  // vit/image_jpeg.cpp
Image decode_png(const uint8_t* bytes, size_t size, const std::string& name);   // vit/image_png.cpp

// "image 'name': message": the one shape of every decoding error.
[[noreturn]] void image_error(const std::string& name, const std::string& message);

// Refuses dimensions that are zero or above kMaxImagePixels before any pixel is allocated.
void check_image_size(const std::string& name, int64_t width, int64_t height);

}  // namespace ivl::image_detail
