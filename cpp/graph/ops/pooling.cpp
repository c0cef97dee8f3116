// Pooling: max, average, L2-norm and dilated max (nodes.md §5).
#include "core/errors.h"
#include "graph/schema.h"

namespace mpsnn {

namespace {
bool is_max(PoolingMode m) { return m == PoolingMode::max || m == PoolingMode::dilated_max; }

// Max pooling records its arg-max (int32 per output element: y * W + x of the winner inside its
// image, -1 for a zero of the padding); average and L2 need nothing beyond the geometry.
std::vector<TensorDesc> pooling_state_buffers(const ShapeContext& ctx, const ShapeResult& r) {
  if (!is_max(ctx.attrs_as<PoolingAttrs>().mode)) return {};
  return {TensorDesc{DType::i32, r.out}};
}

void validate_pooling(const FilterNode& n, const Attrs& attrs) {
  const auto& a = std::get<PoolingAttrs>(attrs);
  check_positive(n, "kernel_width", a.kernel_width);
  check_positive(n, "kernel_height", a.kernel_height);
  check_positive(n, "stride_in_pixels_x", a.stride_x);
  check_positive(n, "stride_in_pixels_y", a.stride_y);
  check_positive(n, "dilation_rate_x", a.dilation_x);
  check_positive(n, "dilation_rate_y", a.dilation_y);
  MPSNN_CHECK(a.zero_pad_size_x >= 0 && a.zero_pad_size_y >= 0, ShapeError, n.context(), " zero pad size ",
              a.zero_pad_size_x, "x", a.zero_pad_size_y, " is negative");
}
}  // namespace

const OpSchema& schema_Pooling() {
  static const OpSchema s = [] {
    OpSchema o = OpSchema::for_kind(OpKind::Pooling);
    // The gradient state: for max pooling, the winning source pixel of every output element.
    o.result_states = {StateSpec{ResultStateKind::gradient, pooling_state_buffers}};
    o.validate_attrs = validate_pooling;
    o.shape = [](const ShapeContext& ctx) {
      const auto& a = ctx.attrs_as<PoolingAttrs>();
      WindowSpec w{a.kernel_height, a.kernel_width, a.stride_y, a.stride_x, a.dilation_y, a.dilation_x,
                   ctx.sources[0].c, a.edge_mode, false};
      ShapeResult r = window_shape(ctx, w);
      r.geom.zero_pad_y = a.zero_pad_size_y;
      r.geom.zero_pad_x = a.zero_pad_size_x;
      MPSNN_CHECK(r.geom.edge_mode == EdgeMode::zero || r.geom.edge_mode == EdgeMode::clamp, ShapeError,
                  ctx.context(), " edge mode ", int(r.geom.edge_mode),
                  " is only defined for the pad filter; expected zero or clamp");
      return r;
    };
    return o;
  }();
  return s;
}

// nodes.md §5.6: the gradient with respect to the forward source, with the forward node's
// geometry (padding, edge mode, zero-pad sizes) taken from its state.
const OpSchema& schema_PoolingGradient() {
  static const OpSchema s = [] {
    OpSchema o = OpSchema::for_kind(OpKind::PoolingGradient);
    o.min_sources = o.max_sources = 2;  // G, forward source X
    o.validate_attrs = validate_pooling;
    o.shape = [](const ShapeContext& ctx) {
      const ResolvedNode& fwd = resolved_forward(ctx);
      MPSNN_CHECK(fwd.node->kind() == OpKind::Pooling, GraphError, ctx.context(), " gradient_state comes from ",
                  fwd.node->context(), "; expected the state of a pooling node");
      const auto& mine = ctx.attrs_as<PoolingAttrs>();
      const auto& theirs = std::get<PoolingAttrs>(fwd.node->attrs());
      MPSNN_CHECK(mine.mode == theirs.mode, GraphError, ctx.context(), " gradient of another pooling mode than ",
                  fwd.node->context());
      return ShapeResult{fwd.sources[0], fwd.geom};
    };
    return o;
  }();
  return s;
}

}  // namespace mpsnn
