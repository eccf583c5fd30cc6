// CPython 3.11's `random` module where the official MMPR pair builder uses it: the Mersenne
// Twister seeded as random.seed(int) does (init_by_array), getrandbits, _randbelow and
// Random.sample, so that the pairs it draws, and their order, are the official ones.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace ivl::py {

class Random {
 public:
  explicit Random(uint32_t seed = 0);  // random.seed(seed) for 0 <= seed < 2**32
  uint32_t genrand_uint32();
  uint32_t getrandbits(int k);  // 0 < k <= 32
  uint64_t randbelow(uint64_t n);  // n >= 1, below 2**32
  // The population positions random.sample(range(n), k) picks, in order (k <= n).
  std::vector<size_t> sample(size_t n, size_t k);

 private:
  static constexpr size_t kN = 624;
  std::array<uint32_t, kN> mt_{};
  size_t index_ = kN;
};

}  // namespace ivl::py
