// Gradients of softmax / log-softmax (nodes.md §7.2, §7.4) and dropout (§11.2).
#include "core/errors.h"
#include "graph/gradients.h"
#include "graph/schema.h"

namespace mpsnn {

// The dropout keep mask (uint8, 1 = kept): the source's shape with 1 on each axis whose mask
// stride is 0 (those elements share one draw). mask_stride is (x, y, feature channels).
ImageShape dropout_mask_shape(const DropoutAttrs& a, const ImageShape& s) {
  return ImageShape{s.n, a.mask_stride[1] ? s.h : 1, a.mask_stride[0] ? s.w : 1, a.mask_stride[2] ? s.c : 1};
}

std::vector<TensorDesc> dropout_state_buffers(const ShapeContext& ctx, const ShapeResult& r) {
  return {TensorDesc{DType::u8, dropout_mask_shape(ctx.attrs_as<DropoutAttrs>(), r.out)}};
}

// nodes.md §7.2 chosen definition: the automatic gradient reads the forward result Y.
std::vector<FilterNodePtr> softmax_gradients(FilterNode& forward, const std::vector<ImageNodePtr>& gradients) {
  MPSNN_CHECK(gradients.size() == 1 && gradients[0] != nullptr, GraphError, forward.context(),
              " gradient_filter needs exactly one incoming gradient image; got ", gradients.size());
  SoftMaxAttrs a = forward.attrs_as<SoftMaxAttrs>();
  a.gradient_reads_source = false;
  FilterNodePtr g = make_filter_node(OpKind::SoftMaxGradient, a, {gradients[0], forward.result_image()},
                                     {forward.result_state()});
  g->set_padding_policy(forward.padding_policy());
  return {g};
}

// Sources: G and the forward result Y (or, built by hand, the forward source X, see
// SoftMaxAttrs::gradient_reads_source).
const OpSchema& schema_SoftMaxGradient() {
  static const OpSchema s = [] {
    OpSchema o = OpSchema::for_kind(OpKind::SoftMaxGradient);
    o.min_sources = o.max_sources = 2;
    o.shape = [](const ShapeContext& ctx) {
      const ResolvedNode& fwd = resolved_forward(ctx);
      MPSNN_CHECK(fwd.node->kind() == OpKind::SoftMax, GraphError, ctx.context(), " gradient_state comes from ",
                  fwd.node->context(), "; expected the state of a softmax or log-softmax node");
      const auto& mine = ctx.attrs_as<SoftMaxAttrs>();
      MPSNN_CHECK(mine.log == std::get<SoftMaxAttrs>(fwd.node->attrs()).log, GraphError, ctx.context(),
                  (mine.log ? " (log-softmax)" : " (softmax)"), " gradient_state comes from ", fwd.node->context(),
                  (mine.log ? ", a softmax node" : ", a log-softmax node"));
      const ImageNodePtr& src = ctx.node.sources()[1];
      const bool is_result = src->parent().get() == fwd.node;
      const bool is_source = src == fwd.node->sources()[0];
      MPSNN_CHECK(mine.gradient_reads_source ? is_source : is_result, GraphError, ctx.context(), " source_image is ",
                  mine.gradient_reads_source ? "not the source" : "not the result_image", " of ", fwd.node->context(),
                  "; expected its result_image (or its source)");
      return ShapeResult{fwd.sources[0], {}};
    };
    return o;
  }();
  return s;
}

// Sources: G and the forward source (its size only); the mask is the state's buffer (third input).
const OpSchema& schema_DropoutGradient() {
  static const OpSchema s = [] {
    OpSchema o = OpSchema::for_kind(OpKind::DropoutGradient);
    o.min_sources = o.max_sources = 2;
    o.validate_attrs = schema(OpKind::Dropout).validate_attrs;
    o.shape = [](const ShapeContext& ctx) {
      const ResolvedNode& fwd = resolved_forward(ctx);
      MPSNN_CHECK(fwd.node->kind() == OpKind::Dropout, GraphError, ctx.context(), " gradient_state comes from ",
                  fwd.node->context(), "; expected the state of a dropout node");
      const auto& mine = ctx.attrs_as<DropoutAttrs>();
      const auto& theirs = std::get<DropoutAttrs>(fwd.node->attrs());
      MPSNN_CHECK(mine.keep_probability == theirs.keep_probability && mine.mask_stride == theirs.mask_stride,
                  ShapeError, ctx.context(), " keep_probability ", mine.keep_probability, " / mask_stride_in_pixels (",
                  mine.mask_stride[0], ", ", mine.mask_stride[1], ", ", mine.mask_stride[2], ") differ from ",
                  fwd.node->context(), "'s ", theirs.keep_probability, " / (", theirs.mask_stride[0], ", ",
                  theirs.mask_stride[1], ", ", theirs.mask_stride[2], "); expected the forward node's values");
      return ShapeResult{fwd.sources[0], {}};
    };
    return o;
  }();
  return s;
}

}  // namespace mpsnn
