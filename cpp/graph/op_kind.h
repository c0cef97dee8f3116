#pragma once
#include <cstdint>

namespace mpsnn {

// One enumerator per op_list.def row, then `None` (the "no gradient" entry of the list).
enum class OpKind : uint16_t {
#define MPSNN_OP(kind, name, attrs, gradient) kind,
#include "graph/op_list.def"
#undef MPSNN_OP
  None
};

constexpr int kNumOpKinds = int(OpKind::None);

const char* op_name(OpKind kind);

// The gradient kind of a forward kind (op_list.def), or OpKind::None.
constexpr OpKind gradient_kind(OpKind kind) {
  switch (kind) {
#define MPSNN_OP(k, name, attrs, gradient) \
  case OpKind::k: return OpKind::gradient;
#include "graph/op_list.def"
#undef MPSNN_OP
    case OpKind::None: break;
  }
  return OpKind::None;
}

// Whether some kind names `kind` in its gradient column (gradient nodes refuse gradient_filter).
constexpr bool is_gradient_kind(OpKind kind) {
  for (int k = 0; k < kNumOpKinds; ++k)
    if (gradient_kind(OpKind(k)) == kind) return true;
  return false;
}

}  // namespace mpsnn
