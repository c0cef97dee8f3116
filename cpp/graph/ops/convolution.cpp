// Convolution family: regular / depthwise / sub-pixel convolution, fully connected,
// transposed convolution (nodes.md §4) and binary convolution (§4.5).
#include "core/errors.h"
#include "graph/schema.h"

namespace mpsnn {

namespace {

const ConvolutionParams& conv_params(const ShapeContext& ctx) {
  MPSNN_CHECK(ctx.params.conv != nullptr, ShapeError, ctx.context(), " has no weights data source");
  return *ctx.params.conv;
}

void check_source_channels(const ShapeContext& ctx, const ConvolutionDescriptor& d) {
  const ImageShape& s = ctx.sources[0];
  MPSNN_CHECK(s.c == d.input_feature_channels, ShapeError, ctx.context(), " source has ", s.c,
              " feature channels, descriptor expects ", d.input_feature_channels,
              nchw_hint(s, d.input_feature_channels));
}

// A regular convolution whose custom padding set a source channel window reads channels
// [offset, offset + Cin) (MPS's sourceFeatureChannelOffset; the max count caps what is left after
// the offset and must leave at least Cin). Without a window the source must have Cin channels.
void check_channel_window(const ShapeContext& ctx, const ConvolutionDescriptor& d, NodeGeometry& g) {
  const ImageShape& s = ctx.sources[0];
  if (g.source_channel_count == 0) return check_source_channels(ctx, d);
  MPSNN_CHECK(g.source_channel_count >= d.input_feature_channels, ShapeError, ctx.context(),
              " custom padding's source channel window starts at ", g.source_channel_offset, " and leaves ",
              g.source_channel_count, " of the source's ", s.c, " feature channels; the descriptor expects ",
              d.input_feature_channels);
  g.source_channel_count = d.input_feature_channels;
  if (g.source_channel_offset == 0 && s.c == d.input_feature_channels) g.source_channel_count = 0;  // the whole source
}

// Edge modes a convolution can honour: zero and clamp (edge replication, nodes.md §1.4).
void check_edge_mode(const ShapeContext& ctx, const NodeGeometry& g) {
  MPSNN_CHECK(g.edge_mode == EdgeMode::zero || g.edge_mode == EdgeMode::clamp, ShapeError, ctx.context(),
              " edge mode ", int(g.edge_mode), " is only defined for the pad filter; expected zero or clamp");
}

ShapeResult convolution_shape(const ShapeContext& ctx) {
  const auto& attrs = ctx.attrs_as<ConvolutionAttrs>();
  const ConvolutionParams& p = conv_params(ctx);
  const ConvolutionDescriptor& d = p.desc;
  const ImageShape& src = ctx.sources[0];
  if (attrs.variant == ConvolutionVariant::fully_connected) check_source_channels(ctx, d);
  switch (attrs.variant) {
    case ConvolutionVariant::fully_connected: {
      MPSNN_CHECK(d.kernel_width == src.w && d.kernel_height == src.h, ShapeError, ctx.context(),
                  " kernel is ", d.kernel_width, "x", d.kernel_height, " but the source is ", src.w, "x", src.h,
                  "; a fully connected kernel must cover the whole source");
      MPSNN_CHECK(d.stride_x == 1 && d.stride_y == 1 && d.groups == 1 && d.dilation_x == 1 && d.dilation_y == 1,
                  ShapeError, ctx.context(), " fully connected layers need stride 1, dilation 1 and groups 1");
      ShapeResult r = fixed_shape(ctx, ImageShape{src.n, 1, 1, d.output_feature_channels}, /*resizable=*/false);
      r.geom.y = WindowAxis{src.h, 1, 1, 0, 0};
      r.geom.x = WindowAxis{src.w, 1, 1, 0, 0};
      return r;
    }
    case ConvolutionVariant::transpose: {
      const StateNode* paired = ctx.node.source_states().empty() ? nullptr : ctx.node.source_states()[0].get();
      if (paired) {
        check_source_channels(ctx, d);
        const ResolvedNode* conv = ctx.state_producer(paired);
        MPSNN_CHECK(conv != nullptr, GraphError, ctx.context(),
                    " convolution_gradient_state comes from a convolution that is not part of this graph");
        // nodes.md §4.3 chosen definition: sized to the paired convolution's source and
        // Pz = (Ke - 1) - P_conv, the adjoint geometry of that convolution.
        ShapeResult r = fixed_shape(ctx, ImageShape{src.n, conv->sources[0].h, conv->sources[0].w, d.output_feature_channels});
        check_paired_transpose_range(ctx, "y", src.h, r.out.h, d.kernel_height, d.stride_y, d.dilation_y,
                                     conv->geom.y.pad_before);
        check_paired_transpose_range(ctx, "x", src.w, r.out.w, d.kernel_width, d.stride_x, d.dilation_x,
                                     conv->geom.x.pad_before);
        auto axis = [](const WindowAxis& c, int64_t K, int64_t s, int64_t dil, int64_t S, int64_t D) {
          WindowAxis w{K, s, dil, 0, 0};
          w.pad_before = (w.extent() - 1) - c.pad_before;
          w.pad_after = (D - 1) + w.extent() - ((S - 1) * s + 1) - w.pad_before;
          return w;
        };
        r.geom.y = axis(conv->geom.y, d.kernel_height, d.stride_y, d.dilation_y, src.h, r.out.h);
        r.geom.x = axis(conv->geom.x, d.kernel_width, d.stride_x, d.dilation_x, src.w, r.out.w);
        return r;
      }
      WindowSpec w{d.kernel_height, d.kernel_width, d.stride_y, d.stride_x, d.dilation_y, d.dilation_x,
                   d.output_feature_channels, EdgeMode::zero, /*reverse=*/true, /*channel_window=*/true};
      ShapeResult r = window_shape(ctx, w);
      // MPS's transposed convolution runs its window over the zero-inserted source, so its
      // inserted zeros and its border are the same thing: an edge-replicating read has no
      // MPS definition there (nodes.md §4.3 defines the zero border only).
      MPSNN_CHECK(r.geom.edge_mode == EdgeMode::zero, UnsupportedError, ctx.context(), " edge mode ",
                  int(r.geom.edge_mode),
                  " set by a custom padding policy: a transposed convolution reads a zero-inserted source, whose "
                  "border is defined only as zero (nodes.md §4.3); expected edge_mode zero");
      check_channel_window(ctx, d, r.geom);
      return r;
    }
    case ConvolutionVariant::regular: break;
  }
  const int64_t r = d.sub_pixel_scale_factor;
  WindowSpec w{d.kernel_height, d.kernel_width, d.stride_y, d.stride_x, d.dilation_y, d.dilation_x,
               d.output_feature_channels, EdgeMode::zero, false, /*channel_window=*/true};
  ShapeResult res = window_shape(ctx, w);
  check_edge_mode(ctx, res.geom);
  check_channel_window(ctx, d, res.geom);
  if (r > 1) {
    res.out.c = d.output_feature_channels / (r * r);
    res.out.h *= r;
    res.out.w *= r;
  }
  return res;
}

ShapeResult binary_convolution_shape(const ShapeContext& ctx) {
  const auto& attrs = ctx.attrs_as<BinaryConvolutionAttrs>();
  const ConvolutionParams& p = conv_params(ctx);
  const ConvolutionDescriptor& d = p.desc;
  check_source_channels(ctx, d);
  const ImageShape& src = ctx.sources[0];
  MPSNN_CHECK(d.groups == 1, ShapeError, ctx.context(), " groups is ", d.groups,
              "; binary convolution supports groups 1 only");
  auto check_len = [&](const std::vector<float>& v, int64_t n, const char* what) {
    MPSNN_CHECK(v.empty() || int64_t(v.size()) == n, ShapeError, ctx.context(), " ", what, " has ",
                v.size(), " entries; expected ", n);
  };
  check_len(attrs.output_bias_terms, d.output_feature_channels, "output_bias_terms");
  check_len(attrs.output_scale_terms, d.output_feature_channels, "output_scale_terms");
  check_len(attrs.input_bias_terms, d.input_feature_channels, "input_bias_terms");
  check_len(attrs.input_scale_terms, d.input_feature_channels, "input_scale_terms");
  if (attrs.fully_connected) {
    MPSNN_CHECK(d.kernel_width == src.w && d.kernel_height == src.h, ShapeError, ctx.context(), " kernel is ",
                d.kernel_width, "x", d.kernel_height, " but the source is ", src.w, "x", src.h,
                "; a fully connected kernel must cover the whole source");
    ShapeResult r = fixed_shape(ctx, ImageShape{src.n, 1, 1, d.output_feature_channels}, /*resizable=*/false);
    r.geom.y = WindowAxis{src.h, 1, 1, 0, 0};
    r.geom.x = WindowAxis{src.w, 1, 1, 0, 0};
    return r;
  }
  WindowSpec w{d.kernel_height, d.kernel_width, d.stride_y, d.stride_x, d.dilation_y, d.dilation_x,
               d.output_feature_channels, EdgeMode::zero, false};
  ShapeResult r = window_shape(ctx, w);
  MPSNN_CHECK(r.geom.edge_mode == EdgeMode::zero, UnsupportedError, ctx.context(), " edge mode ", int(r.geom.edge_mode),
              " set by a custom padding policy: binary convolution pads with zeros only on this backend");
  return r;
}

}  // namespace

const OpSchema& schema_Convolution() {
  static const OpSchema s = [] {
    OpSchema o = OpSchema::for_kind(OpKind::Convolution);
    o.result_states = {StateSpec{ResultStateKind::convolution_gradient, nullptr}};
    o.shape = convolution_shape;
    return o;
  }();
  return s;
}

const OpSchema& schema_BinaryConvolution() {
  static const OpSchema s = [] {
    OpSchema o = OpSchema::for_kind(OpKind::BinaryConvolution);
    o.validate_attrs = [](const FilterNode& n, const Attrs& attrs) {
      const auto& a = std::get<BinaryConvolutionAttrs>(attrs);
      MPSNN_CHECK(int(a.type) >= 0 && int(a.type) <= 2, ShapeError, n.context(), " binary convolution type ",
                  int(a.type), " is unknown; expected 0 (binaryWeights), 1 (xnor) or 2 (and)");
      MPSNN_CHECK(a.flags == 0 || a.flags == 1, ShapeError, n.context(), " flags ", a.flags,
                  " are unknown; expected 0 (none) or 1 (useBetaScaling)");
    };
    o.shape = binary_convolution_shape;
    return o;
  }();
  return s;
}

}  // namespace mpsnn
