#include "data/python_random.h"

#include <cmath>
#include <stdexcept>
#include <unordered_set>

namespace ivl::py {

Random::Random(uint32_t seed) {
  // init_genrand(19650218), then init_by_array with the seed's one 32-bit chunk.
  mt_[0] = 19650218u;
  for (size_t i = 1; i < kN; ++i) mt_[i] = 1812433253u * (mt_[i - 1] ^ (mt_[i - 1] >> 30)) + static_cast<uint32_t>(i);
  const uint32_t key = seed;  // key_length 1: j is always 0
  size_t i = 1;
  for (size_t k = kN; k > 0; --k) {
    mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1664525u)) + key;
    if (++i >= kN) mt_[0] = mt_[kN - 1], i = 1;
  }
  for (size_t k = kN - 1; k > 0; --k) {
    mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1566083941u)) - static_cast<uint32_t>(i);
    if (++i >= kN) mt_[0] = mt_[kN - 1], i = 1;
  }
  mt_[0] = 0x80000000u;
  index_ = kN;
}

uint32_t Random::genrand_uint32() {
  constexpr uint32_t kUpper = 0x80000000u, kLower = 0x7fffffffu, kMatrix = 0x9908b0dfu;
  if (index_ >= kN) {
    for (size_t k = 0; k < kN; ++k) {
      const uint32_t y = (mt_[k] & kUpper) | (mt_[(k + 1) % kN] & kLower);
      mt_[k] = mt_[(k + 397) % kN] ^ (y >> 1) ^ ((y & 1u) ? kMatrix : 0u);
    }
    index_ = 0;
  }
  uint32_t y = mt_[index_++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

uint32_t Random::getrandbits(int k) {
  if (k <= 0 || k > 32) throw std::invalid_argument("getrandbits: k must be in 1..32");
  return genrand_uint32() >> (32 - k);
}

uint64_t Random::randbelow(uint64_t n) {
  if (n == 0 || n > 0xffffffffull) throw std::invalid_argument("randbelow: n must be in 1..2**32-1");
  int k = 0;
  while ((n >> k) != 0) ++k;  // n.bit_length()
  uint64_t r = getrandbits(k);
  while (r >= n) r = getrandbits(k);
  return r;
}

std::vector<size_t> Random::sample(size_t n, size_t k) {
  if (k > n) throw std::invalid_argument("sample larger than population");
  size_t setsize = 21;
  if (k > 5) setsize += static_cast<size_t>(std::pow(4.0, std::ceil(std::log(3.0 * static_cast<double>(k)) / std::log(4.0))));
  std::vector<size_t> result(k);
  if (n <= setsize) {  // the pool algorithm
    std::vector<size_t> pool(n);
    for (size_t i = 0; i < n; ++i) pool[i] = i;
    for (size_t i = 0; i < k; ++i) {
      const auto j = static_cast<size_t>(randbelow(n - i));
      result[i] = pool[j];
      pool[j] = pool[n - i - 1];
    }
  } else {  // the set algorithm
    std::unordered_set<size_t> selected;
    for (size_t i = 0; i < k; ++i) {
      auto j = static_cast<size_t>(randbelow(n));
      while (selected.count(j)) j = static_cast<size_t>(randbelow(n));
      selected.insert(j);
      result[i] = j;
    }
  }
  return result;
}

}  // namespace ivl::py
