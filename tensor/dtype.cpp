// dtype names and sizes, and the IEEE half conversions (bf16 is inline in the header).
#include "tensor/dtype.h"

namespace ivl {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f64: case DType::i64: return 8;
    case DType::f32: case DType::i32: return 4;
    case DType::bf16: case DType::f16: return 2;
    case DType::u8: case DType::boolean: return 1;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::bf16: return "bf16";
    case DType::f16: return "f16";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
    case DType::u8: return "u8";
    case DType::boolean: return "bool";
  }
  return "?";
}

const char* device_name(Device device) { return device == Device::cpu ? "cpu" : "cuda"; }

uint16_t f32_to_f16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude >= 0x7f800000u) return static_cast<uint16_t>(sign | (magnitude > 0x7f800000u ? 0x7e00u : 0x7c00u));
  // 65520 is halfway between the largest half (65504) and 2^16; ties-to-even goes up, to infinity.
  if (magnitude >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);
  const int exponent = static_cast<int>(magnitude >> 23);
  if (magnitude < 0x38800000u) {  // below 2^-14: a half subnormal (units of 2^-24) or zero
    if (exponent < 102) return static_cast<uint16_t>(sign);
    const uint32_t significand = (magnitude & 0x7fffffu) | 0x800000u;
    const int shift = 126 - exponent;
    uint32_t units = significand >> shift;
    const uint32_t rest = significand & ((1u << shift) - 1u), halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (units & 1u))) ++units;
    return static_cast<uint16_t>(sign | units);
  }
  uint32_t half = (static_cast<uint32_t>(exponent - 127 + 15) << 10) | ((magnitude & 0x7fffffu) >> 13);
  const uint32_t rest = magnitude & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // a carry correctly bumps the exponent
  return static_cast<uint16_t>(sign | half);
}

float f16_to_f32(uint16_t half) {
  const uint32_t sign = static_cast<uint32_t>(half & 0x8000u) << 16;
  const uint32_t exponent = (half >> 10) & 0x1fu, mantissa = half & 0x3ffu;
  uint32_t bits;
  if (exponent == 0) {
    float value = static_cast<float>(mantissa) * 5.9604644775390625e-8f;  // m * 2^-24, exact
    return sign ? -value : value;
  }
  if (exponent == 31) bits = sign | 0x7f800000u | (mantissa << 13);
  else bits = sign | ((exponent - 15 + 127) << 23) | (mantissa << 13);
  float value;
  std::memcpy(&value, &bits, 4);
  return value;
}

}  // namespace ivl
