// Philox4x32-10 and the per-element recipes for uniform and normal draws.
#include "tensor/random.h"

#include <cmath>

namespace ivl {

std::array<uint32_t, 4> philox4x32(uint64_t key, uint64_t counter) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = uint64_t{0xD2511F53u} * c0, p1 = uint64_t{0xCD9E8D57u} * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0, n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1), c3 = static_cast<uint32_t>(p0), c0 = n0, c2 = n2;
    k0 += 0x9E3779B9u, k1 += 0xBB67AE85u;
  }
  return {c0, c1, c2, c3};
}

float philox_uniform_at(uint64_t seed, uint64_t base, uint64_t index) {
  return philox_uniform(philox4x32(seed, base + index / 4)[index % 4]);
}

void philox_fill_uniform(float* out, int64_t n, uint64_t seed, uint64_t base, float low, float high) {
  const float width = high - low;
  for (int64_t block = 0; block * 4 < n; ++block) {
    const auto words = philox4x32(seed, base + static_cast<uint64_t>(block));
    for (int64_t lane = 0; lane < 4 && block * 4 + lane < n; ++lane)
      out[block * 4 + lane] = low + width * philox_uniform(words[static_cast<size_t>(lane)]);
  }
}

float philox_normal_at(uint64_t seed, uint64_t base, uint64_t index) {
  const auto words = philox4x32(seed, base + index / 2);
  const size_t lane = 2 * (index % 2);
  const double u1 = (static_cast<double>(words[lane] >> 8) + 1.0) * 0x1p-24;  // (0, 1]: log is finite
  const double u2 = static_cast<double>(words[lane + 1] >> 8) * 0x1p-24;
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
}

}  // namespace ivl
