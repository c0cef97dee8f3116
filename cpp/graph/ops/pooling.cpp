// Pooling: max, average, L2-norm and dilated max (nodes.md §5).
#include "core/errors.h"
#include "graph/schema.h"

namespace mpsnn {

const OpSchema& schema_Pooling() {
  static const OpSchema s = [] {
    OpSchema o;
    o.name = "pooling";
    o.result_state = ResultStateKind::gradient;
    o.validate_attrs = [](const FilterNode& n) {
      const auto& a = n.attrs_as<PoolingAttrs>();
      check_positive(n, "kernel_width", a.kernel_width);
      check_positive(n, "kernel_height", a.kernel_height);
      check_positive(n, "stride_in_pixels_x", a.stride_x);
      check_positive(n, "stride_in_pixels_y", a.stride_y);
      check_positive(n, "dilation_rate_x", a.dilation_x);
      check_positive(n, "dilation_rate_y", a.dilation_y);
      MPSNN_CHECK(a.zero_pad_size_x >= 0 && a.zero_pad_size_y >= 0, ShapeError, n.context(), " zero pad size ",
                  a.zero_pad_size_x, "x", a.zero_pad_size_y, " is negative");
    };
    o.shape = [](const ShapeContext& ctx) {
      const auto& a = ctx.node.attrs_as<PoolingAttrs>();
      WindowSpec w{a.kernel_height, a.kernel_width, a.stride_y, a.stride_x, a.dilation_y, a.dilation_x,
                   ctx.sources[0].c, a.edge_mode, false};
      ShapeResult r = window_shape(ctx, w);
      MPSNN_CHECK(r.geom.edge_mode == EdgeMode::zero || r.geom.edge_mode == EdgeMode::clamp, ShapeError,
                  ctx.node.context(), " edge mode ", int(r.geom.edge_mode),
                  " is only defined for the pad filter; expected zero or clamp");
      return r;
    };
    return o;
  }();
  return s;
}

}  // namespace mpsnn
