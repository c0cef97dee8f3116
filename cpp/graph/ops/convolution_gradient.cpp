// Convolution family gradients (nodes.md §4.3, §4.4, §4.6): one kind for the regular (grouped,
// depthwise, dilated, strided), fully connected and transposed convolution gradients, the variant
// taken from the forward node. Sources: the incoming gradient G (the forward result's size) and the
// forward source X; source state: the forward node's gradient state, through which the forward's
// resolved geometry (padding, edge mode, channel window, paired-transpose sizing) is mirrored.
// Result: dX with X's size. Result state (an MPSCNNConvolutionGradientState): dW in the data
// source's OHWI layout and db, float32, summed over the batch; none when the node's training style
// is updateDeviceNone (graph.md §1.7 project decision: only the data gradient then).
#include "core/errors.h"
#include "graph/schema.h"

namespace mpsnn {

namespace {

const char* variant_name(ConvolutionVariant v) {
  switch (v) {
    case ConvolutionVariant::regular: return "convolution";
    case ConvolutionVariant::fully_connected: return "fully connected";
    case ConvolutionVariant::transpose: return "transposed convolution";
  }
  return "convolution";
}

bool computes_weight_gradients(const ConvolutionAttrs& a) {
  return a.training_style != TrainingStyle::update_device_none;
}

std::vector<TensorDesc> gradient_state_buffers(const ShapeContext& ctx, const ShapeResult&) {
  if (!computes_weight_gradients(ctx.attrs_as<ConvolutionAttrs>())) return {};
  const ConvolutionDescriptor& d = ctx.params.conv->desc;
  const int64_t cg = d.depthwise ? 1 : d.input_feature_channels / d.groups;
  return {TensorDesc{DType::f32, ImageShape{d.output_feature_channels, d.kernel_height, d.kernel_width, cg},
                     "gradient_for_weights"},
          TensorDesc{DType::f32, ImageShape{1, 1, 1, d.output_feature_channels}, "gradient_for_biases"}};
}

// The gradient's descriptor (its own data source, or the forward's) must describe the forward
// node's geometry: the kernels differentiate that geometry with these weights.
void check_descriptor(const ShapeContext& ctx, const ResolvedNode& fwd, const ConvolutionDescriptor& d) {
  // The messages name the forward node too: a gradient node made by training_graph has no label.
  MPSNN_CHECK(d.sub_pixel_scale_factor == 1, UnsupportedError, ctx.context(), " (of ", fwd.node->context(),
              "): sub-pixel convolutions have no gradient (nodes.md §4.2); sub_pixel_scale_factor is ",
              d.sub_pixel_scale_factor);
  MPSNN_CHECK(!d.depthwise || d.output_feature_channels == d.input_feature_channels, UnsupportedError,
              ctx.context(), " (of ", fwd.node->context(),
              "): depthwise convolutions with a channel multiplier other than 1 have no gradient");
  const NodeGeometry& g = fwd.geom;
  const auto& fa = std::get<ConvolutionAttrs>(fwd.node->attrs());
  const bool fc = fa.variant == ConvolutionVariant::fully_connected;
  const int64_t kh = fc ? fwd.sources[0].h : g.y.kernel, kw = fc ? fwd.sources[0].w : g.x.kernel;
  const int64_t sy = fc ? 1 : g.y.stride, sx = fc ? 1 : g.x.stride;
  const int64_t dy = fc ? 1 : g.y.dilation, dx = fc ? 1 : g.x.dilation;
  const int64_t cin = g.source_channel_count ? g.source_channel_count : fwd.sources[0].c;
  MPSNN_CHECK(d.kernel_height == kh && d.kernel_width == kw && d.stride_y == sy && d.stride_x == sx &&
                  d.dilation_y == dy && d.dilation_x == dx && d.input_feature_channels == cin &&
                  d.output_feature_channels == fwd.out.c,
              ShapeError, ctx.context(), " weights describe a ", d.kernel_width, "x", d.kernel_height, " kernel (stride ",
              d.stride_x, "x", d.stride_y, ", dilation ", d.dilation_x, "x", d.dilation_y, ") from ",
              d.input_feature_channels, " to ", d.output_feature_channels, " feature channels; ", fwd.node->context(),
              " runs a ", kw, "x", kh, " kernel (stride ", sx, "x", sy, ", dilation ", dx, "x", dy, ") from ", cin,
              " to ", fwd.out.c, " feature channels. Pass weights=None to use the forward node's data source");
  MPSNN_CHECK(d.fused_neuron.type == NeuronType::none, UnsupportedError, ctx.context(), " (of ",
              fwd.node->context(), "): the data source's descriptor fuses a ", neuron_name(d.fused_neuron.type),
              " neuron; training data sources must not (nodes.md §4.1): use a separate neuron node and its "
              "gradient");
  // A folded batch norm: the kernels would differentiate the folded weights W' = W·γ/√(v + ε) and
  // report dL/dW' as the gradient of the data source's W.
  MPSNN_CHECK(!d.batch_norm && !d.batch_norm_folded, UnsupportedError, ctx.context(), " (of ", fwd.node->context(),
              "): the data source's descriptor folds a batch normalization "
              "(set_batch_normalization_parameters_for_inference); training data sources must not (nodes.md "
              "§4.1): use a separate MPSCNNBatchNormalizationNode and its gradient");
}

ShapeResult convolution_gradient_shape(const ShapeContext& ctx) {
  const ResolvedNode& fwd = resolved_forward(ctx);
  const auto& mine = ctx.attrs_as<ConvolutionAttrs>();
  MPSNN_CHECK(fwd.node->kind() == OpKind::Convolution, GraphError, ctx.context(), " gradient_state comes from ",
              fwd.node->context(), "; expected the convolution_gradient_state of a convolution node");
  const auto& theirs = std::get<ConvolutionAttrs>(fwd.node->attrs());
  MPSNN_CHECK(mine.variant == theirs.variant, GraphError, ctx.context(), " is the gradient of a ",
              variant_name(mine.variant), " but its gradient_state comes from ", fwd.node->context(), ", a ",
              variant_name(theirs.variant));
  MPSNN_CHECK(ctx.params.conv != nullptr, ShapeError, ctx.context(), " has no weights data source");
  check_descriptor(ctx, fwd, ctx.params.conv->desc);
  return ShapeResult{fwd.sources[0], fwd.geom};
}

}  // namespace

const OpSchema& schema_ConvolutionGradient() {
  static const OpSchema s = [] {
    OpSchema o = OpSchema::for_kind(OpKind::ConvolutionGradient);
    o.min_sources = o.max_sources = 2;  // G, forward source X
    o.result_states = {StateSpec{ResultStateKind::convolution_gradient, gradient_state_buffers}};
    o.shape = convolution_gradient_shape;
    return o;
  }();
  return s;
}

}  // namespace mpsnn
