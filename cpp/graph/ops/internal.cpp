// Internal kinds the compiler inserts (no Python class): boundary format conversions and the
// poison fill. Their steps are made by passes/lower_boundaries.cpp, never from nodes.
#include "core/errors.h"
#include "graph/schema.h"

namespace mpsnn {

namespace {
OpSchema internal_schema(OpKind k) {
  OpSchema o = OpSchema::for_kind(k);
  o.internal = true;
  o.min_sources = 0;
  o.shape = [](const ShapeContext& ctx) -> ShapeResult {
    MPSNN_THROW(GraphError, ctx.context(), " internal steps have no shape rule");
  };
  return o;
}
}  // namespace

const OpSchema& schema_Convert() {
  static const OpSchema s = internal_schema(OpKind::Convert);
  return s;
}

const OpSchema& schema_Fill() {
  static const OpSchema s = internal_schema(OpKind::Fill);
  return s;
}

OpSchema OpSchema::for_kind(OpKind k) {
  OpSchema o;
  o.kind = k;
  o.name = op_name(k);
  o.gradient = gradient_kind(k);
  o.is_gradient = is_gradient_kind(k);
  return o;
}

}  // namespace mpsnn
