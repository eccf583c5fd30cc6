// Pixel shuffle and the mlp1 projector (see projector.h).
#include "vit/projector.h"

#include <cmath>

namespace ivl {

PixelShuffleVersion parse_ps_version(const std::string& text) {
  if (text == "v1") return PixelShuffleVersion::v1;
  if (text == "v2") return PixelShuffleVersion::v2;
  fail("ps_version must be \"v1\" or \"v2\", found \"" + text + "\"");
}

// Python's int(a * s) for the shapes of the official code, checked to be exact.
static int64_t scaled(int64_t a, double s, const char* what, const Tensor& x) {
  const double v = static_cast<double>(a) * s;
  if (v != std::floor(v) || v < 1)
    fail(std::string("pixel_shuffle: ") + what + " " + std::to_string(a) + " times " + std::to_string(s) +
         " is not a whole number (input " + x.str() + ")");
  return static_cast<int64_t>(v);
}

Tensor pixel_shuffle(const Tensor& x, double s, PixelShuffleVersion version) {
  if (x.dim() != 4) fail("pixel_shuffle: x must be [N, rows, cols, C], got " + x.str());
  const int64_t n = x.size(0), w = x.size(1), h = x.size(2), c = x.size(3);  // the official names
  Tensor y = x.reshape({n, w, scaled(h, s, "cols", x), scaled(c, 1 / s, "channels", x)});
  y = y.permute({0, 2, 1, 3}).contiguous();
  y = y.reshape({n, scaled(h, s, "cols", x), scaled(w, s, "rows", x), scaled(c, 1 / (s * s), "channels", x)});
  if (version == PixelShuffleVersion::v2) y = y.permute({0, 2, 1, 3}).contiguous();
  return y;
}

Projector::Projector(ParameterSet& params, int64_t in, int64_t out, const std::string& prefix)
    : norm(params, prefix + "0", in, 1e-5), fc1(params, prefix + "1", in, out, true), fc2(params, prefix + "3", out, out, true) {}

Tensor vit_to_llm_tokens(const Tensor& vit_hidden, double downsample_ratio, PixelShuffleVersion version,
                         const Projector& projector) {
  const int64_t N = vit_hidden.size(0), tokens = vit_hidden.size(1) - 1, C = vit_hidden.size(2);
  const auto side = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(tokens))));
  if (side * side != tokens) fail("vit_to_llm_tokens: " + std::to_string(tokens) + " patch tokens do not form a square grid");
  Tensor grid = vit_hidden.narrow(1, 1, tokens).reshape({N, side, side, C});
  Tensor shuffled = pixel_shuffle(grid, downsample_ratio, version);
  return projector(shuffled.reshape({N, -1, shuffled.size(-1)}));
}

}  // namespace ivl
