// Gradients of the cross-channel, spatial and local-contrast normalizations (nodes.md §8.2-8.4).
// The parameters are the gradient node's own (copied from the forward node by gradient_filter);
// the forward node, found through the state, fixes the sizes.
#include "core/errors.h"
#include "graph/schema.h"

namespace mpsnn {

const OpSchema& schema_NormalizationGradient() {
  static const OpSchema s = [] {
    OpSchema o = OpSchema::for_kind(OpKind::NormalizationGradient);
    o.min_sources = o.max_sources = 2;  // G, forward source X
    o.validate_attrs = schema(OpKind::Normalization).validate_attrs;
    o.shape = [](const ShapeContext& ctx) {
      const ResolvedNode& fwd = resolved_forward(ctx);
      MPSNN_CHECK(fwd.node->kind() == OpKind::Normalization, GraphError, ctx.context(), " gradient_state comes from ",
                  fwd.node->context(), "; expected the state of a normalization node");
      MPSNN_CHECK(ctx.attrs_as<NormalizationAttrs>().mode == std::get<NormalizationAttrs>(fwd.node->attrs()).mode,
                  GraphError, ctx.context(), " is the gradient of another normalization than ", fwd.node->context());
      return ShapeResult{fwd.sources[0], {}};
    };
    return o;
  }();
  return s;
}

}  // namespace mpsnn
