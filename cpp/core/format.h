#pragma once
// Image channel formats (MPSImageFeatureChannelFormat) and the float16 conversions the CPU
// backend needs at graph boundaries.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/dtype.h"

namespace mpsnn {

// Raw values are MPS's (graph.md §0.2). bfloat16 is mpsnn's own (MPS has no bfloat16 images): a
// value outside MPS's range, so that no later MPS format can collide with it.
enum class ChannelFormat : int { none = 0, unorm8 = 1, unorm16 = 2, float16 = 3, float32 = 4, bfloat16 = 100 };

inline size_t element_size(ChannelFormat f) {
  switch (f) {
    case ChannelFormat::unorm8: return 1;
    case ChannelFormat::unorm16:
    case ChannelFormat::float16:
    case ChannelFormat::bfloat16: return 2;
    case ChannelFormat::float32: return 4;
    default: return 0;
  }
}

inline int precision_bits(ChannelFormat f) {
  switch (f) {
    case ChannelFormat::unorm8: return 8;
    case ChannelFormat::unorm16: return 16;
    case ChannelFormat::float16: return 11;
    case ChannelFormat::bfloat16: return 8;
    case ChannelFormat::float32: return 24;
    default: return 0;
  }
}

const char* format_name(ChannelFormat f);

// The element type an image of this format is stored as (unorm formats as unsigned integers).
inline DType storage_dtype(ChannelFormat f) {
  switch (f) {
    case ChannelFormat::unorm8: return DType::u8;
    case ChannelFormat::unorm16: return DType::u16;
    case ChannelFormat::float16: return DType::f16;
    case ChannelFormat::bfloat16: return DType::bf16;
    default: return DType::f32;
  }
}

// IEEE binary16 <-> binary32, round to nearest even, with infinities, NaN and subnormals.
inline float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    exp = 113;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --exp;
    }
    bits = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) return sign | (abs > 0x7f800000u ? 0x7e00u : 0x7c00u);
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: overflow
  if (abs < 0x38800000u) {                        // result is subnormal or zero
    if (abs < 0x33000000u) return sign;
    const uint32_t e = abs >> 23;
    const uint32_t m = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14..24
    uint32_t h = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u))) ++h;
    return sign | uint16_t(h);
  }
  uint32_t h = ((abs - 0x38000000u) >> 13);
  const uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return sign | uint16_t(h);
}

// bfloat16 (the upper half of a binary32) <-> binary32, round to nearest even; NaN stays NaN.
inline float bfloat16_to_float(uint16_t b) {
  const uint32_t bits = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t float_to_bfloat16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40u);  // quiet NaN
  x += 0x7fffu + ((x >> 16) & 1u);
  return uint16_t(x >> 16);
}

// Converts `count` elements between a stored format and float32.
void convert_to_float(ChannelFormat from, const void* src, float* dst, size_t count);
void convert_from_float(ChannelFormat to, const float* src, void* dst, size_t count);

}  // namespace mpsnn
