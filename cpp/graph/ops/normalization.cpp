// Normalizations: batch and instance normalization (nodes.md §8.5-8.6) and the cross-channel,
// spatial and local-contrast normalizations (§8.2-8.4).
#include "core/errors.h"
#include "graph/schema.h"

namespace mpsnn {

namespace {
ShapeResult parameterized_norm_shape(const ShapeContext& ctx) {
  MPSNN_CHECK(ctx.params.norm != nullptr, ShapeError, ctx.node.context(), " has no data source");
  const int64_t c = ctx.params.norm->channels;
  MPSNN_CHECK(ctx.sources[0].c == c, ShapeError, ctx.node.context(), " source has ", ctx.sources[0].c,
              " feature channels, data source has ", c);
  return same_shape(ctx);
}
}  // namespace

const OpSchema& schema_BatchNormalization() {
  static const OpSchema s = [] {
    OpSchema o;
    o.name = "batch normalization";
    o.size_preserving = true;
    o.result_state = ResultStateKind::gradient;
    o.shape = parameterized_norm_shape;
    return o;
  }();
  return s;
}

const OpSchema& schema_InstanceNormalization() {
  static const OpSchema s = [] {
    OpSchema o;
    o.name = "instance normalization";
    o.size_preserving = true;
    o.result_state = ResultStateKind::gradient;
    o.shape = parameterized_norm_shape;
    return o;
  }();
  return s;
}

const OpSchema& schema_Normalization() {
  static const OpSchema s = [] {
    OpSchema o;
    o.name = "normalization";
    o.size_preserving = true;
    o.result_state = ResultStateKind::gradient;
    o.validate_attrs = [](const FilterNode& n) {
      const auto& a = n.attrs_as<NormalizationAttrs>();
      check_positive(n, "kernel_width", a.kernel_width);
      check_positive(n, "kernel_height", a.kernel_height);
      MPSNN_CHECK(a.alpha >= 0.0f, ShapeError, n.context(), " alpha is ", a.alpha, "; expected >= 0");
    };
    o.shape = [](const ShapeContext& ctx) { return same_shape(ctx); };
    return o;
  }();
  return s;
}

}  // namespace mpsnn
