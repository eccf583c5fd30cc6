// Element types and devices of the tensor engine, and the bf16/f16 <-> f32 conversions.
// bf16 and f16 are storage types: CPU kernels compute in f32 (or f64) and convert at the edges.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace ivl {

enum class DType : uint8_t { f32, f64, bf16, f16, i32, i64, u8, boolean };
enum class Device : uint8_t { cpu, cuda };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);  // "f32", "bf16", "bool", ...
const char* device_name(Device device);
inline bool is_floating(DType d) { return d == DType::f32 || d == DType::f64 || d == DType::bf16 || d == DType::f16; }
inline bool is_half(DType d) { return d == DType::bf16 || d == DType::f16; }
inline bool is_integral(DType d) { return d == DType::i32 || d == DType::i64 || d == DType::u8; }

// Round-to-nearest-even, as PyTorch's .to(torch.bfloat16) does; NaN stays NaN.
inline uint16_t f32_to_bf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

inline float bf16_to_f32(uint16_t half) {
  uint32_t bits = static_cast<uint32_t>(half) << 16;
  float value;
  std::memcpy(&value, &bits, 4);
  return value;
}

uint16_t f32_to_f16(float value);  // IEEE binary16, round-to-nearest-even, subnormals kept
float f16_to_f32(uint16_t half);

// The C++ type of each dtype, for kernels.
template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::i64; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::u8; }
template <> constexpr DType dtype_of<bool>() { return DType::boolean; }

}  // namespace ivl
