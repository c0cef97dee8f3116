#pragma once
#include <cstdint>

namespace mpsnn {

enum class OpKind : uint16_t {
#define MPSNN_OP(kind, name, attrs) kind,
#include "graph/op_list.def"
#undef MPSNN_OP
};

constexpr int kNumOpKinds = 0
#define MPSNN_OP(kind, name, attrs) +1
#include "graph/op_list.def"
#undef MPSNN_OP
    ;

const char* op_name(OpKind kind);

}  // namespace mpsnn
