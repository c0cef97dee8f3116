#include "graph/schema.h"

#include <type_traits>
#include <variant>

namespace mpsnn {

namespace {
template <typename T, typename V>
struct is_alternative;
template <typename T, typename... Ts>
struct is_alternative<T, std::variant<Ts...>> : std::disjunction<std::is_same<T, Ts>...> {};
}  // namespace

// The attrs column of op_list.def must name alternatives of `Attrs`.
#define MPSNN_OP(k, name, attrs, gradient)                        \
  static_assert(is_alternative<attrs, Attrs>::value, "op_list.def: " #attrs " (kind " #k \
                ") is not an alternative of Attrs (graph/attrs.h)");
#include "graph/op_list.def"
#undef MPSNN_OP

const char* op_name(OpKind kind) {
  switch (kind) {
#define MPSNN_OP(k, name, attrs, gradient) \
  case OpKind::k: return name;
#include "graph/op_list.def"
#undef MPSNN_OP
    case OpKind::None: break;
  }
  return "none";
}

const OpSchema& schema(OpKind kind) {
  switch (kind) {
#define MPSNN_OP(k, name, attrs, gradient) \
  case OpKind::k: return schema_##k();
#include "graph/op_list.def"
#undef MPSNN_OP
    case OpKind::None: break;
  }
  MPSNN_THROW(GraphError, "[schema] internal error: no schema for op kind ", int(kind));
}

bool holds_attrs_of(OpKind kind, const Attrs& attrs) {
  switch (kind) {
#define MPSNN_OP(k, name, attr_type, gradient) \
  case OpKind::k: return std::holds_alternative<attr_type>(attrs);
#include "graph/op_list.def"
#undef MPSNN_OP
    case OpKind::None: break;
  }
  return false;
}

}  // namespace mpsnn
