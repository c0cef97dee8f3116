#include "graph/schema.h"

namespace mpsnn {

const char* op_name(OpKind kind) {
  switch (kind) {
#define MPSNN_OP(k, name, attrs) \
  case OpKind::k: return name;
#include "graph/op_list.def"
#undef MPSNN_OP
  }
  return "unknown";
}

const OpSchema& schema(OpKind kind) {
  switch (kind) {
#define MPSNN_OP(k, name, attrs) \
  case OpKind::k: return schema_##k();
#include "graph/op_list.def"
#undef MPSNN_OP
  }
  return schema_Convolution();
}

}  // namespace mpsnn
