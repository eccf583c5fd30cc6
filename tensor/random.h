// Seeded random numbers. Philox4x32-10 (Salmon et al., SC'11) is counter-based: element i of a draw
// depends only on (seed, offset + i), so a CUDA kernel can reproduce the CPU stream bit for bit and a
// checkpoint only needs (seed, offset) to resume the stream.
#pragma once
#include <array>
#include <cstdint>

namespace ivl {

std::array<uint32_t, 4> philox4x32(uint64_t key, uint64_t counter);

// Uniform in [0, 1) with 24 random bits (exact in f32).
inline float philox_uniform(uint32_t bits) { return static_cast<float>(bits >> 8) * 5.9604644775390625e-8f; }

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) { seed_ = seed, offset_ = offset; }
  // Reserves `blocks` Philox counters (4 words each) and returns the first.
  uint64_t reserve(uint64_t blocks) {
    const uint64_t first = offset_;
    offset_ += blocks;
    return first;
  }

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
};

// The CPU recipes shared by Tensor::rand/randn and dropout; element i of a draw starting at
// counter `base` uses block base + i / 4 (uniform) or base + i / 2 (normal, Box-Muller on 2 words).
float philox_uniform_at(uint64_t seed, uint64_t base, uint64_t index);
// out[i] = low + (high - low) * uniform(i) for i < n: the stream of philox_uniform_at, a block at a time.
void philox_fill_uniform(float* out, int64_t n, uint64_t seed, uint64_t base, float low, float high);
float philox_normal_at(uint64_t seed, uint64_t base, uint64_t index);

}  // namespace ivl
