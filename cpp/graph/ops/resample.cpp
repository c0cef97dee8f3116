// Upsampling (nodes.md §9) and scale nodes (§10).
#include "core/errors.h"
#include "graph/schema.h"

namespace mpsnn {

const OpSchema& schema_Upsampling() {
  static const OpSchema s = [] {
    OpSchema o = OpSchema::for_kind(OpKind::Upsampling);
    o.result_states = {StateSpec{ResultStateKind::gradient, nullptr}};
    o.validate_attrs = [](const FilterNode& n, const Attrs& attrs) {
      const auto& a = std::get<UpsamplingAttrs>(attrs);
      check_positive(n, "scale_factor_x", a.scale_factor_x);
      check_positive(n, "scale_factor_y", a.scale_factor_y);
    };
    o.shape = [](const ShapeContext& ctx) {
      const auto& a = ctx.attrs_as<UpsamplingAttrs>();
      const ImageShape& src = ctx.sources[0];
      MPSNN_CHECK(checked_bytes({src.n, src.h, a.scale_factor_y, src.w, a.scale_factor_x, src.c}, 4) >= 0, ShapeError,
                  ctx.context(), " upsampling a ", src.w, "x", src.h, "x", src.c, " source by ", a.scale_factor_x, "x",
                  a.scale_factor_y, " gives a result of more than 2^52 bytes");
      return fixed_shape(ctx, ImageShape{src.n, src.h * a.scale_factor_y, src.w * a.scale_factor_x, src.c});
    };
    return o;
  }();
  return s;
}

const OpSchema& schema_Scale() {
  static const OpSchema s = [] {
    OpSchema o = OpSchema::for_kind(OpKind::Scale);
    o.validate_attrs = [](const FilterNode& n, const Attrs& attrs) {
      const auto& a = std::get<ScaleAttrs>(attrs);
      check_positive(n, "output_size.width", a.output_width);
      check_positive(n, "output_size.height", a.output_height);
      MPSNN_CHECK(a.output_depth == 1, ShapeError, n.context(), " output_size.depth is ", a.output_depth,
                  "; expected 1 (feature channels are never resampled)");
    };
    o.shape = [](const ShapeContext& ctx) {
      const auto& a = ctx.attrs_as<ScaleAttrs>();
      const ImageShape& src = ctx.sources[0];
      ShapeResult r = fixed_shape(ctx, ImageShape{src.n, a.output_height, a.output_width, src.c});
      ScaleTransform t{double(r.out.w) / double(src.w), double(r.out.h) / double(src.h), 0, 0};
      if (a.transform_provider) {
        if (auto given = a.transform_provider->transform(src.w, src.h, src.c, ctx.node.sources()[0]->handle)) t = *given;
      }
      MPSNN_CHECK(t.scale_x != 0.0 && t.scale_y != 0.0, ShapeError, ctx.context(), " transform scale is ",
                  t.scale_x, "x", t.scale_y, "; expected non-zero scales");
      r.geom.transform = t;
      return r;
    };
    return o;
  }();
  return s;
}

}  // namespace mpsnn
