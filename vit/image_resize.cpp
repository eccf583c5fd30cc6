// Pillow-exact bicubic resampling (see image_resize.h). Every floating-point step of Pillow's
// precompute_coeffs is kept in the same order and precision, since one rounding difference in a
// weight changes output bytes; the integer accumulation may be reordered freely (it is exact).
#include "vit/image_resize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace ivl {
namespace {

// Pillow: "8 bits for result. Filter can have negative areas... we need two extra bits for overflow
// and int type."
constexpr int kPrecisionBits = 32 - 8 - 2;

// Keys' cubic convolution kernel with a = -0.5, written as Pillow writes it (same operation order).
double bicubic_filter(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}
constexpr double kBicubicSupport = 2.0;

// For each output position along one axis: the first input index, the number of taps, and the
// fixed-point weights (`taps_per_output` slots per output, unused ones zero).
struct AxisCoefficients {
  int taps_per_output = 0;
  std::vector<int> first;
  std::vector<int> count;
  std::vector<int32_t> weights;
};

// Pillow's precompute_coeffs followed by normalize_coeffs_8bpc, for the box [0, in_size).
AxisCoefficients precompute_coefficients(int in_size, int out_size) {
  // Pillow's box is float: (double)(in1 - in0) with in0 = 0.0f, in1 = (float)in_size.
  const double scale = static_cast<double>(static_cast<float>(in_size) - 0.0f) / out_size;
  const double filter_scale = std::max(scale, 1.0);  // widen the kernel when shrinking (antialias)
  const double support = kBicubicSupport * filter_scale;
  AxisCoefficients axis;
  axis.taps_per_output = static_cast<int>(std::ceil(support)) * 2 + 1;
  const size_t slots = static_cast<size_t>(axis.taps_per_output);
  axis.first.resize(static_cast<size_t>(out_size));
  axis.count.resize(static_cast<size_t>(out_size));
  axis.weights.assign(static_cast<size_t>(out_size) * slots, 0);
  std::vector<double> weights(slots);
  for (int out = 0; out < out_size; ++out) {
    const double center = 0.0 + (out + 0.5) * scale;
    const double inverse_filter_scale = 1.0 / filter_scale;
    // C's (int) truncates toward zero, also for the negative values near the left edge.
    const int first = std::max(static_cast<int>(center - support + 0.5), 0);
    const int end = std::min(static_cast<int>(center + support + 0.5), in_size);
    const int count = end - first;
    double total = 0.0;
    for (int t = 0; t < count; ++t) {
      const double w = bicubic_filter((t + first - center + 0.5) * inverse_filter_scale);
      weights[static_cast<size_t>(t)] = w;
      total += w;
    }
    int32_t* fixed = &axis.weights[static_cast<size_t>(out) * slots];
    for (int t = 0; t < count; ++t) {
      double w = weights[static_cast<size_t>(t)];
      if (total != 0.0) w /= total;
      // Rounded half away from zero, as normalize_coeffs_8bpc does.
      fixed[t] = static_cast<int32_t>(w < 0 ? -0.5 + w * (1 << kPrecisionBits) : 0.5 + w * (1 << kPrecisionBits));
    }
    axis.first[static_cast<size_t>(out)] = first;
    axis.count[static_cast<size_t>(out)] = count;
  }
  return axis;
}

// The vertical pass is a plain integer loop over whole rows; on x86-64 it is also compiled for AVX2
// (picked at load time when the CPU has it), whose 8-lane 32-bit multiply SSE2 lacks: twice as fast.
// Integer sums are exact, so every variant gives the same bytes.
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define IVL_RESAMPLE_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define IVL_RESAMPLE_CLONES
#endif

// Pillow's clip8: the accumulator (which started at one half) shifted down and clamped to 0..255.
inline uint8_t clip8(int32_t accumulator) {
  const int32_t value = accumulator >> kPrecisionBits;  // arithmetic shift (floor), as in C on Pillow's targets
  return static_cast<uint8_t>(value < 0 ? 0 : value > 255 ? 255 : value);
}

// Horizontal pass over source rows [row_begin, row_end) into an image of width axis outputs.
Image resample_horizontal(const Image& source, const AxisCoefficients& axis, int out_width, int row_begin,
                          int row_end) {
  Image out(out_width, row_end - row_begin);
  const size_t slots = static_cast<size_t>(axis.taps_per_output);
  for (int y = row_begin; y < row_end; ++y) {
    const uint8_t* in_row = source.row(y);
    uint8_t* out_row = out.row(y - row_begin);
    for (int x = 0; x < out_width; ++x) {
      const int32_t* k = &axis.weights[static_cast<size_t>(x) * slots];
      const uint8_t* pixel = in_row + static_cast<size_t>(axis.first[static_cast<size_t>(x)]) * 3;
      int32_t red = 1 << (kPrecisionBits - 1), green = red, blue = red;
      for (int t = 0, n = axis.count[static_cast<size_t>(x)]; t < n; ++t, pixel += 3) {
        red += pixel[0] * k[t];
        green += pixel[1] * k[t];
        blue += pixel[2] * k[t];
      }
      out_row[3 * x] = clip8(red);
      out_row[3 * x + 1] = clip8(green);
      out_row[3 * x + 2] = clip8(blue);
    }
  }
  return out;
}

// Vertical pass; `row_offset` is the source row that the axis's index 0 refers to (Pillow shifts the
// bounds when the horizontal pass kept only the rows the vertical pass reads). Whole rows are
// accumulated at once, so the inner loop runs over contiguous bytes.
IVL_RESAMPLE_CLONES Image resample_vertical(const Image& source, const AxisCoefficients& axis, int out_height,
                                            int row_offset) {
  Image out(source.width, out_height);
  const size_t slots = static_cast<size_t>(axis.taps_per_output);
  const size_t row_bytes = source.row_bytes();
  std::vector<int32_t> accumulator(row_bytes);
  for (int y = 0; y < out_height; ++y) {
    const int32_t* k = &axis.weights[static_cast<size_t>(y) * slots];
    const int first = axis.first[static_cast<size_t>(y)] - row_offset;
    std::fill(accumulator.begin(), accumulator.end(), 1 << (kPrecisionBits - 1));
    for (int t = 0, n = axis.count[static_cast<size_t>(y)]; t < n; ++t) {
      const uint8_t* in_row = source.row(first + t);
      const int32_t weight = k[t];
      int32_t* sum = accumulator.data();
      for (size_t i = 0; i < row_bytes; ++i) sum[i] += in_row[i] * weight;
    }
    uint8_t* out_row = out.row(y);
    for (size_t i = 0; i < row_bytes; ++i) out_row[i] = clip8(accumulator[i]);
  }
  return out;
}

}  // namespace

Image resize_bicubic(const Image& source, int width, int height) {
  if (source.width < 1 || source.height < 1)
    throw std::invalid_argument("resize_bicubic: the source image is empty (" + std::to_string(source.width) +
                                "x" + std::to_string(source.height) + ")");
  if (width < 1 || height < 1)
    throw std::invalid_argument("resize_bicubic: target size " + std::to_string(width) + "x" +
                                std::to_string(height) + " must be at least 1x1");
  const bool need_horizontal = width != source.width;
  const bool need_vertical = height != source.height;
  if (!need_horizontal && !need_vertical) return source;

  const AxisCoefficients vertical = precompute_coefficients(source.height, height);
  if (!need_vertical) {
    return resample_horizontal(source, precompute_coefficients(source.width, width), width, 0, source.height);
  }
  if (!need_horizontal) return resample_vertical(source, vertical, height, 0);
  // Only the rows that some output row reads go through the horizontal pass.
  const int first_row = vertical.first.front();
  const int end_row = vertical.first.back() + vertical.count.back();
  const Image temporary =
      resample_horizontal(source, precompute_coefficients(source.width, width), width, first_row, end_row);
  return resample_vertical(temporary, vertical, height, first_row);
}

Image crop(const Image& source, int left, int top, int width, int height) {
  if (left < 0 || top < 0 || width < 0 || height < 0 || left + width > source.width || top + height > source.height)
    throw std::invalid_argument("crop: box (" + std::to_string(left) + ", " + std::to_string(top) + ", " +
                                std::to_string(left + width) + ", " + std::to_string(top + height) +
                                ") is not inside the " + std::to_string(source.width) + "x" +
                                std::to_string(source.height) + " image");
  Image out(width, height);
  for (int y = 0; y < height; ++y)
    std::memcpy(out.row(y), source.row(top + y) + static_cast<size_t>(left) * 3, out.row_bytes());
  return out;
}

}  // namespace ivl
