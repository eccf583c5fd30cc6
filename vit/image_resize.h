// Resizing and cropping RGB images exactly as Pillow does for `image.resize(size)` (BICUBIC, the
// default for RGB) and `image.crop(box)`: the official InternVL tiles are made this way, and the
// model saw those bytes in training.
#pragma once
#include "vit/image.h"

namespace ivl {

// Pillow's Image.resize((width, height), Image.BICUBIC) over the whole image (its Resample.c, 8 bits
// per channel): separable, horizontal pass first into an 8-bit temporary, then vertical; Keys cubic
// with a = -0.5, widened by the scale when shrinking; weights in fixed point with 22 fractional bits.
// A pass whose size is unchanged is skipped, so resizing to the same size is a copy.
// Throws std::invalid_argument for an empty source or a size below 1.
Image resize_bicubic(const Image& source, int width, int height);

// The pixels of the box [left, left + width) x [top, top + height), which must lie inside the image
// (Pillow pads outside boxes with black; the tiling never asks for one).
Image crop(const Image& source, int left, int top, int width, int height);

}  // namespace ivl
