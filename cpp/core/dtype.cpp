#include "core/dtype.h"

namespace mpsnn {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "float32";
    case DType::f16: return "float16";
    case DType::bf16: return "bfloat16";
    case DType::i32: return "int32";
    case DType::u8: return "uint8";
    case DType::u16: return "uint16";
  }
  return "unknown";
}

}  // namespace mpsnn
