// Gradients of nearest and bilinear upsampling (nodes.md §9.1-9.2): the adjoint of the forward
// interpolation, with the forward node's scale factors and align_corners.
#include "core/errors.h"
#include "graph/schema.h"

namespace mpsnn {

const OpSchema& schema_UpsamplingGradient() {
  static const OpSchema s = [] {
    OpSchema o = OpSchema::for_kind(OpKind::UpsamplingGradient);
    o.min_sources = o.max_sources = 2;  // G, forward source X (its size)
    o.validate_attrs = schema(OpKind::Upsampling).validate_attrs;
    o.shape = [](const ShapeContext& ctx) {
      const ResolvedNode& fwd = resolved_forward(ctx);
      MPSNN_CHECK(fwd.node->kind() == OpKind::Upsampling, GraphError, ctx.context(), " gradient_state comes from ",
                  fwd.node->context(), "; expected the state of an upsampling node");
      const auto& mine = ctx.attrs_as<UpsamplingAttrs>();
      const auto& theirs = std::get<UpsamplingAttrs>(fwd.node->attrs());
      MPSNN_CHECK(mine.mode == theirs.mode, GraphError, ctx.context(), " is the gradient of another upsampling mode than ",
                  fwd.node->context());
      MPSNN_CHECK(mine.scale_factor_x == theirs.scale_factor_x && mine.scale_factor_y == theirs.scale_factor_y &&
                      mine.align_corners == theirs.align_corners,
                  ShapeError, ctx.context(), " scale factors ", mine.scale_factor_x, "x", mine.scale_factor_y,
                  " (align_corners ", mine.align_corners, ") differ from ", fwd.node->context(), "'s ",
                  theirs.scale_factor_x, "x", theirs.scale_factor_y, " (align_corners ", theirs.align_corners,
                  "); expected the forward node's");
      return ShapeResult{fwd.sources[0], {}};
    };
    return o;
  }();
  return s;
}

}  // namespace mpsnn
