#pragma once
// Element types of plan values and state buffers. Images at a graph's boundary have an MPS
// channel format (format.h); inside a plan every value has one of these storage types.
#include <cstddef>
#include <cstdint>

namespace mpsnn {

enum class DType : uint8_t { f32, f16, bf16, i32, u8, u16 };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32:
    case DType::i32: return 4;
    case DType::f16:
    case DType::bf16:
    case DType::u16: return 2;
    case DType::u8: return 1;
  }
  return 0;
}

const char* dtype_name(DType t);

}  // namespace mpsnn
