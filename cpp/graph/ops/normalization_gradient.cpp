// Batch and instance normalization gradients (nodes.md §8.5, §8.6). Sources: the incoming gradient G
// and the forward source X; source state: the forward node's result state (for batch normalization
// the mean and variance it normalized with). Result: dX. Result state: the MPS state class of the
// family with gamma and beta as used and, unless the training style is updateDeviceNone (graph.md
// §1.7 project decision), their gradients dγ = Σ G·x̂ and dβ = Σ G over the whole batch; batch
// normalization's also repeats the statistics (MPSCNNBatchNormalizationState's mean(), variance()).
#include "core/errors.h"
#include "graph/schema.h"

namespace mpsnn {

namespace {

template <typename A>
std::vector<TensorDesc> parameter_buffers(const ShapeContext& ctx, bool statistics) {
  const ImageShape v{1, 1, 1, ctx.params.norm->channels};
  std::vector<TensorDesc> out;
  if (statistics) {
    out.push_back(TensorDesc{DType::f32, v, "mean"});
    out.push_back(TensorDesc{DType::f32, v, "variance"});
  }
  out.push_back(TensorDesc{DType::f32, v, "gamma"});
  out.push_back(TensorDesc{DType::f32, v, "beta"});
  if (ctx.attrs_as<A>().training_style != TrainingStyle::update_device_none) {
    out.push_back(TensorDesc{DType::f32, v, "gradient_for_gamma"});
    out.push_back(TensorDesc{DType::f32, v, "gradient_for_beta"});
  }
  return out;
}

ShapeResult normalization_gradient_shape(const ShapeContext& ctx, OpKind forward_kind) {
  const ResolvedNode& fwd = resolved_forward(ctx);
  MPSNN_CHECK(fwd.node->kind() == forward_kind, GraphError, ctx.context(), " gradient_state comes from ",
              fwd.node->context(), "; expected the result_state of a ", op_name(forward_kind), " node");
  MPSNN_CHECK(ctx.params.norm != nullptr, ShapeError, ctx.context(), " has no data source");
  const int64_t c = ctx.params.norm->channels;
  MPSNN_CHECK(fwd.sources[0].c == c, ShapeError, ctx.context(), " forward source has ", fwd.sources[0].c,
              " feature channels, data source has ", c);
  return ShapeResult{fwd.sources[0], {}};
}

}  // namespace

const OpSchema& schema_BatchNormalizationGradient() {
  static const OpSchema s = [] {
    OpSchema o = OpSchema::for_kind(OpKind::BatchNormalizationGradient);
    o.min_sources = o.max_sources = 2;  // G, forward source X
    o.result_states = {StateSpec{ResultStateKind::batch_normalization, [](const ShapeContext& ctx, const ShapeResult&) {
                                   return parameter_buffers<BatchNormalizationAttrs>(ctx, true);
                                 }}};
    o.shape = [](const ShapeContext& ctx) { return normalization_gradient_shape(ctx, OpKind::BatchNormalization); };
    return o;
  }();
  return s;
}

const OpSchema& schema_InstanceNormalizationGradient() {
  static const OpSchema s = [] {
    OpSchema o = OpSchema::for_kind(OpKind::InstanceNormalizationGradient);
    o.min_sources = o.max_sources = 2;
    o.result_states = {StateSpec{ResultStateKind::instance_normalization_gradient,
                                 [](const ShapeContext& ctx, const ShapeResult&) {
                                   return parameter_buffers<InstanceNormalizationAttrs>(ctx, false);
                                 }}};
    o.shape = [](const ShapeContext& ctx) {
      return normalization_gradient_shape(ctx, OpKind::InstanceNormalization);
    };
    return o;
  }();
  return s;
}

}  // namespace mpsnn
