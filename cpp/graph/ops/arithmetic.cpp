// Binary arithmetic (nodes.md §3) and concatenation (§12).
#include "core/errors.h"
#include "graph/schema.h"

namespace mpsnn {

// ops/arithmetic_gradient.cpp
std::vector<TensorDesc> arithmetic_state_buffers(const ShapeContext& ctx, const ShapeResult& r);
std::vector<FilterNodePtr> arithmetic_gradients(FilterNode& forward, const std::vector<ImageNodePtr>& gradients);
std::vector<FilterNodePtr> concatenation_gradients(FilterNode& forward, const std::vector<ImageNodePtr>& gradients);

const OpSchema& schema_Arithmetic() {
  static const OpSchema s = [] {
    OpSchema o = OpSchema::for_kind(OpKind::Arithmetic);
    o.min_sources = o.max_sources = 2;
    // The gradient state: the clamp mask of every result element (read by both gradient nodes).
    o.result_states = {StateSpec{ResultStateKind::arithmetic_gradient, arithmetic_state_buffers}};
    o.gradient_rule = arithmetic_gradients;
    o.validate_attrs = [](const FilterNode& n, const Attrs& attrs) {
      const auto& a = std::get<ArithmeticAttrs>(attrs);
      for (int i = 0; i < 3; ++i)
        MPSNN_CHECK((a.primary_strides[i] == 0 || a.primary_strides[i] == 1) &&
                        (a.secondary_strides[i] == 0 || a.secondary_strides[i] == 1),
                    ShapeError, n.context(), " strides must be 0 (broadcast) or 1; got primary (",
                    a.primary_strides[0], ", ", a.primary_strides[1], ", ", a.primary_strides[2], "), secondary (",
                    a.secondary_strides[0], ", ", a.secondary_strides[1], ", ", a.secondary_strides[2], ")");
    };
    o.shape = [](const ShapeContext& ctx) {
      const auto& a = ctx.attrs_as<ArithmeticAttrs>();
      const ImageShape& p = ctx.sources[0];
      const ImageShape& q = ctx.sources[1];
      MPSNN_CHECK(p.n == q.n, ShapeError, ctx.context(), " primary source has ", p.n,
                  " images, secondary has ", q.n, "; expected the same batch size");
      // nodes.md §3.1 chosen definition: per axis the extent of the stride-1 operand(s).
      const char* names[3] = {"feature channels", "height", "width"};
      const int64_t pe[3] = {p.c, p.h, p.w}, qe[3] = {q.c, q.h, q.w};
      int64_t out[3];
      for (int i = 0; i < 3; ++i) {
        const bool ps = a.primary_strides[i] == 1, qs = a.secondary_strides[i] == 1;
        if (ps && qs) {
          MPSNN_CHECK(pe[i] == qe[i], ShapeError, ctx.context(), " primary source has ", pe[i], " ", names[i],
                      ", secondary has ", qe[i], "; expected equal extents (or a stride of 0 to broadcast one)");
          out[i] = pe[i];
        } else {
          out[i] = ps ? pe[i] : qs ? qe[i] : 1;
        }
      }
      return fixed_shape(ctx, ImageShape{p.n, out[1], out[2], out[0]}, /*resizable=*/false);
    };
    return o;
  }();
  return s;
}

// Slot offsets of concatenated sources: each rounded up to a multiple of 4 channels.
std::vector<int64_t> concatenation_offsets(const std::vector<ImageShape>& sources) {
  std::vector<int64_t> off;
  int64_t o = 0;
  for (const auto& s : sources) {
    off.push_back(o);
    o += (s.c + 3) / 4 * 4;
  }
  return off;
}

const OpSchema& schema_Concatenation() {
  static const OpSchema s = [] {
    OpSchema o = OpSchema::for_kind(OpKind::Concatenation);
    o.max_sources = -1;
    o.result_states = {StateSpec{ResultStateKind::multiary_gradient, nullptr}};
    o.gradient_rule = concatenation_gradients;
    o.shape = [](const ShapeContext& ctx) {
      const ImageShape& f = ctx.sources[0];
      for (size_t i = 1; i < ctx.sources.size(); ++i) {
        const ImageShape& s = ctx.sources[i];
        MPSNN_CHECK(s.h == f.h && s.w == f.w && s.n == f.n, ShapeError, ctx.context(), " source ", i, " is ",
                    s.w, "x", s.h, " with ", s.n, " images; expected ", f.w, "x", f.h, " with ", f.n,
                    " images like source 0");
      }
      const auto off = concatenation_offsets(ctx.sources);
      return same_shape(ctx, off.back() + ctx.sources.back().c);
    };
    return o;
  }();
  return s;
}

}  // namespace mpsnn
