// JPEG decoding through libjpeg-turbo with the settings Pillow uses (libjpeg's defaults: islow
// integer IDCT, fancy upsampling, block smoothing for progressive files), so the pixels equal
// Pillow's. Gray is replicated; CMYK/YCCK go through Pillow's Adobe-inverted CMYK -> RGB formula.
#include <csetjmp>
#include <cstdio>  // jpeglib.h uses FILE and size_t without including their headers
#include <vector>

#include <jpeglib.h>
#include <jerror.h>

#include "vit/image_decoders.h"

namespace ivl::image_detail {
namespace {

// libjpeg reports a fatal error by calling error_exit, which must not return: ours longjmps back to
// the setjmp of the phase function that called into libjpeg. Those functions hold only trivially
// destructible locals, so the jump skips no destructor; the C++ side then throws.
struct JpegErrorManager {
  jpeg_error_mgr base;  // first member: libjpeg hands us &base as cinfo->err
  std::jmp_buf jump;
  bool premature_end;  // the data ended before the image did (libjpeg only warns and pads)
  char message[JMSG_LENGTH_MAX];
};

struct JpegDecoder {
  jpeg_decompress_struct cinfo;
  JpegErrorManager error;
  // Safe on a zeroed or half-built cinfo: jpeg_destroy checks for the memory manager first.
  ~JpegDecoder() { jpeg_destroy_decompress(&cinfo); }
};

[[noreturn]] void on_fatal_error(j_common_ptr cinfo) {
  auto* manager = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  manager->base.format_message(cinfo, manager->message);
  std::longjmp(manager->jump, 1);
}

// Warnings (level -1) are ignored as Pillow ignores them ("corrupt data: extraneous bytes" and the
// like still give an image), except the end of the data: the memory source then inserts a fake EOI
// and the rest of the image comes out gray, where Pillow raises "image file is truncated".
void on_message(j_common_ptr cinfo, int level) {
  auto* manager = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  if (level >= 0) return;  // trace messages
  manager->base.num_warnings++;
  if (manager->base.msg_code == JWRN_JPEG_EOF) manager->premature_end = true;
}

// ---- phase functions: each returns false after a libjpeg error (message in decoder.error) ----

bool read_header(JpegDecoder& decoder, const uint8_t* bytes, size_t size) {
  if (setjmp(decoder.error.jump)) return false;
  jpeg_create_decompress(&decoder.cinfo);
  jpeg_mem_src(&decoder.cinfo, bytes, static_cast<unsigned long>(size));
  jpeg_read_header(&decoder.cinfo, TRUE);
  return true;
}

bool start_decompress(JpegDecoder& decoder) {
  if (setjmp(decoder.error.jump)) return false;
  jpeg_start_decompress(&decoder.cinfo);
  return true;
}

// Pillow stores a CMYK JPEG as "CMYK;I" (Adobe's inverted convention), then convert('RGB') computes
// r = clip8(nk - c * nk / 255) with nk = 255 - k and its rounded integer division (MULDIV255).
// With Pillow's c = 255 - raw_c and k = 255 - raw_k from libjpeg, that is the formula below.
inline uint8_t pillow_cmyk_to_rgb_channel(int raw_ink, int raw_black) {
  const int ink = 255 - raw_ink;
  const int not_black = raw_black;  // Pillow's nk = 255 - (255 - raw_black)
  const int product = ink * not_black + 128;
  const int value = not_black - (((product >> 8) + product) >> 8);
  return static_cast<uint8_t>(value < 0 ? 0 : value > 255 ? 255 : value);
}

// Reads every scanline into `rgb` (height rows of width*3 bytes); gray and CMYK rows go through
// `row_buffer` (width * output_components bytes) and are converted.
bool read_rows(JpegDecoder& decoder, uint8_t* rgb, uint8_t* row_buffer) {
  if (setjmp(decoder.error.jump)) return false;
  jpeg_decompress_struct& cinfo = decoder.cinfo;
  const size_t width = cinfo.output_width;
  const int components = cinfo.output_components;
  while (cinfo.output_scanline < cinfo.output_height) {
    uint8_t* out = rgb + static_cast<size_t>(cinfo.output_scanline) * width * 3;
    JSAMPROW row = components == 3 ? out : row_buffer;
    if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) {  // only a suspending source returns no row
      std::snprintf(decoder.error.message, sizeof decoder.error.message, "libjpeg returned no scanline");
      return false;
    }
    if (components == 1) {
      for (size_t x = 0; x < width; ++x) out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = row_buffer[x];
    } else if (components == 4) {
      for (size_t x = 0; x < width; ++x) {
        const uint8_t* cmyk = row_buffer + 4 * x;
        for (size_t c = 0; c < 3; ++c) out[3 * x + c] = pillow_cmyk_to_rgb_channel(cmyk[c], cmyk[3]);
      }
    }
  }
  return true;
}

bool finish_decompress(JpegDecoder& decoder) {
  if (setjmp(decoder.error.jump)) return false;
  jpeg_finish_decompress(&decoder.cinfo);
  return true;
}

}  // namespace

Image decode_jpeg(const uint8_t* bytes, size_t size, const std::string& name) {
  JpegDecoder decoder{};  // zeroed, so that the destructor is safe whatever happens next
  decoder.cinfo.err = jpeg_std_error(&decoder.error.base);
  decoder.error.base.error_exit = on_fatal_error;
  decoder.error.base.emit_message = on_message;
  const auto fail_with_libjpeg_message = [&](const char* phase) {
    image_error(name, std::string("corrupt JPEG (") + phase + "): " + decoder.error.message);
  };
  const auto check_not_truncated = [&]() {
    if (decoder.error.premature_end)
      image_error(name, "truncated JPEG: the data ends before the image does");
  };

  if (!read_header(decoder, bytes, size)) {
    check_not_truncated();
    fail_with_libjpeg_message("header");
  }
  jpeg_decompress_struct& cinfo = decoder.cinfo;
  check_image_size(name, cinfo.image_width, cinfo.image_height);
  // Pillow picks the mode from the component count (1 L, 3 RGB, 4 CMYK) and lets libjpeg convert
  // from the colour space it detects (YCbCr, RGB, YCCK, ...).
  switch (cinfo.num_components) {
    case 1: cinfo.out_color_space = JCS_GRAYSCALE; break;
    case 3: cinfo.out_color_space = JCS_RGB; break;
    case 4: cinfo.out_color_space = JCS_CMYK; break;
    default:
      image_error(name, "JPEG with " + std::to_string(cinfo.num_components) +
                            " components is not supported (1 gray, 3 colour, 4 CMYK)");
  }
  cinfo.dct_method = JDCT_ISLOW;
  cinfo.do_fancy_upsampling = TRUE;

  // Progressive files are decoded whole here, so a truncated one is caught before any row.
  if (!start_decompress(decoder)) {
    check_not_truncated();
    fail_with_libjpeg_message("start");
  }
  check_not_truncated();
  if (cinfo.output_width != cinfo.image_width || cinfo.output_height != cinfo.image_height ||
      cinfo.output_components != cinfo.num_components)
    image_error(name, "libjpeg produced an unexpected output layout");

  Image image(static_cast<int>(cinfo.output_width), static_cast<int>(cinfo.output_height));
  std::vector<uint8_t> row_buffer(static_cast<size_t>(cinfo.output_width) * static_cast<size_t>(cinfo.output_components));
  if (!read_rows(decoder, image.pixels.data(), row_buffer.data())) {
    check_not_truncated();
    fail_with_libjpeg_message("scan data");
  }
  check_not_truncated();
  // A file whose image data is complete but whose end marker is missing loads in Pillow too, so
  // the end of data while looking for EOI is not an error.
  if (!finish_decompress(decoder)) fail_with_libjpeg_message("end");
  return image;
}

}  // namespace ivl::image_detail
