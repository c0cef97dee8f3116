// Normalizations: batch and instance normalization (nodes.md §8.5-8.6) and the cross-channel,
// spatial and local-contrast normalizations (§8.2-8.4).
#include "core/errors.h"
#include "graph/schema.h"

namespace mpsnn {

namespace {
ShapeResult parameterized_norm_shape(const ShapeContext& ctx) {
  MPSNN_CHECK(ctx.params.norm != nullptr, ShapeError, ctx.context(), " has no data source");
  const int64_t c = ctx.params.norm->channels;
  MPSNN_CHECK(ctx.sources[0].c == c, ShapeError, ctx.context(), " source has ", ctx.sources[0].c,
              " feature channels, data source has ", c,
              nchw_hint(ctx.sources[0], c));
  return same_shape(ctx);
}
}  // namespace

// The statistics the forward step normalized with (the batch's in training, the data source's
// otherwise), for its gradient and for the MPSCNNBatchNormalizationState it delivers.
static std::vector<TensorDesc> batch_normalization_statistics(const ShapeContext& ctx, const ShapeResult&) {
  const ImageShape v{1, 1, 1, ctx.params.norm->channels};
  return {TensorDesc{DType::f32, v, "mean"}, TensorDesc{DType::f32, v, "variance"}};
}

const OpSchema& schema_BatchNormalization() {
  static const OpSchema s = [] {
    OpSchema o = OpSchema::for_kind(OpKind::BatchNormalization);
    o.result_states = {StateSpec{ResultStateKind::batch_normalization, batch_normalization_statistics}};
    o.shape = parameterized_norm_shape;
    return o;
  }();
  return s;
}

const OpSchema& schema_InstanceNormalization() {
  static const OpSchema s = [] {
    OpSchema o = OpSchema::for_kind(OpKind::InstanceNormalization);
    // No buffers: the gradient recomputes the per-image statistics from the forward source it reads.
    o.result_states = {StateSpec{ResultStateKind::instance_normalization_gradient, nullptr}};
    o.shape = parameterized_norm_shape;
    return o;
  }();
  return s;
}

const OpSchema& schema_Normalization() {
  static const OpSchema s = [] {
    OpSchema o = OpSchema::for_kind(OpKind::Normalization);
    o.result_states = {StateSpec{ResultStateKind::gradient, nullptr}};
    o.validate_attrs = [](const FilterNode& n, const Attrs& attrs) {
      const auto& a = std::get<NormalizationAttrs>(attrs);
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
