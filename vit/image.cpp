// Image files to RGB pixels: reads the file, recognises the format by its magic bytes (never by the
// extension, which datasets get wrong), and hands the bytes to the JPEG or PNG decoder.
// Formats Pillow would read but we do not (WebP, GIF, ...) are named in the error.
#include "vit/image.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "vit/image_decoders.h"

namespace ivl {

Image::Image(int width_, int height_) : width(width_), height(height_) {
  if (width_ < 0 || height_ < 0)
    throw std::invalid_argument("Image: negative size " + std::to_string(width_) + "x" + std::to_string(height_));
  pixels.assign(static_cast<size_t>(width_) * static_cast<size_t>(height_) * 3, 0);
}

namespace image_detail {

void image_error(const std::string& name, const std::string& message) {
  throw std::runtime_error("image '" + name + "': " + message);
}

void check_image_size(const std::string& name, int64_t width, int64_t height) {
  if (width <= 0 || height <= 0)
    image_error(name, "invalid size " + std::to_string(width) + "x" + std::to_string(height));
  if (width * height > kMaxImagePixels)
    image_error(name, "image of " + std::to_string(width) + "x" + std::to_string(height) + " = " +
                          std::to_string(width * height) + " pixels is larger than the limit of " +
                          std::to_string(kMaxImagePixels) + " (Pillow's decompression-bomb limit)");
}

}  // namespace image_detail

namespace {

bool starts_with(const uint8_t* bytes, size_t size, const char* magic, size_t magic_size, size_t at = 0) {
  return size >= at + magic_size && std::memcmp(bytes + at, magic, magic_size) == 0;
}

// A name for the formats we recognise but do not decode, so the error says what the file is.
const char* unsupported_format_name(const uint8_t* bytes, size_t size) {
  if (starts_with(bytes, size, "RIFF", 4) && starts_with(bytes, size, "WEBP", 4, 8)) return "WebP";
  if (starts_with(bytes, size, "GIF87a", 6) || starts_with(bytes, size, "GIF89a", 6)) return "GIF";
  if (starts_with(bytes, size, "BM", 2)) return "BMP";
  if (starts_with(bytes, size, "II*\0", 4) || starts_with(bytes, size, "MM\0*", 4)) return "TIFF";
  if (starts_with(bytes, size, "ftyp", 4, 4)) return "HEIF/AVIF (ISO media)";
  return nullptr;
}

std::string first_bytes_hex(const uint8_t* bytes, size_t size) {
  std::string text;
  char hex[4];
  for (size_t i = 0; i < size && i < 8; ++i) {
    std::snprintf(hex, sizeof hex, i ? " %02x" : "%02x", bytes[i]);
    text += hex;
  }
  return text;
}

}  // namespace

Image decode_image(const uint8_t* bytes, size_t size, const std::string& name) {
  using image_detail::image_error;
  if (size == 0) image_error(name, "the file is empty");
  if (starts_with(bytes, size, "\xff\xd8\xff", 3)) return image_detail::decode_jpeg(bytes, size, name);
  if (starts_with(bytes, size, "\x89PNG\r\n\x1a\n", 8)) return image_detail::decode_png(bytes, size, name);
  if (const char* format = unsupported_format_name(bytes, size))
    image_error(name, std::string("unsupported image format ") + format + " (ivl reads JPEG and PNG)");
  image_error(name, "not a JPEG or PNG file (it starts with bytes " + first_bytes_hex(bytes, size) + ")");
}

Image load_image(const std::string& path) {
  using image_detail::image_error;
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) image_error(path, "is a directory, not an image file");
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  if (!file) image_error(path, std::string("cannot open the file: ") + std::strerror(errno));
  const std::streamoff size = file.tellg();
  if (size < 0) image_error(path, "cannot tell the file's size");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  file.seekg(0);
  if (!file.read(reinterpret_cast<char*>(bytes.data()), size)) image_error(path, "reading the file failed");
  return decode_image(bytes.data(), bytes.size(), path);
}

}  // namespace ivl
