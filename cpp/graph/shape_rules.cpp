#include <algorithm>
#include <cstdint>

#include "core/errors.h"
#include "graph/schema.h"

namespace mpsnn {

using namespace padding;

namespace {
PaddingRequest make_request(const ShapeContext& ctx) {
  return PaddingRequest{ctx.sources, ctx.source_formats, ctx.context(), &ctx.node};
}

ImageDescriptor suggested_descriptor(const ImageShape& out, const ShapeContext& ctx) {
  ImageDescriptor d;
  d.width = out.w;
  d.height = out.h;
  d.feature_channels = out.c;
  d.number_of_images = out.n;
  d.channel_format = const_cast<FilterNode&>(ctx.node).result_image()->format;
  return d;
}
// Kinds without a channel window (every one but convolution): a custom policy that set one
// would otherwise be ignored silently.
void refuse_channel_window(const KernelProps& kernel, const ShapeContext& ctx) {
  MPSNN_CHECK(kernel.source_feature_channel_offset == 0 && kernel.source_feature_channel_max_count == INT64_MAX &&
                  kernel.destination_feature_channel_offset == 0,
              UnsupportedError, ctx.context(), " custom padding set source_feature_channel_offset ",
              kernel.source_feature_channel_offset, " / destination_feature_channel_offset ",
              kernel.destination_feature_channel_offset,
              "; only a windowed convolution reads a channel window of its source on this backend");
}
// resolve_axis and window_from_offset compute in int64: the values of one axis must fit first
// (kernel, stride and dilation are positive here; a custom policy may set any result size and
// offset).
using Wide = __int128;
bool fits(Wide v) { return v <= (Wide(1) << 62) && v >= -(Wide(1) << 62); }

void check_axis_range(const ShapeContext& ctx, const char* axis, int64_t S, int64_t K, int64_t s, int64_t d,
                      int method, bool reverse) {
  const Wide Ke = (Wide(K) - 1) * d + 1;
  const int size_bits = method & kSizeMask;
  const Wide sigma = size_bits == kSizeValidOnly ? -1 : size_bits == kSizeSame ? 0 : 1;
  const Wide D = reverse ? (Wide(S) - 1) * s + 1 + sigma * (Ke - 1) : (Wide(S) + sigma * (Ke - 1)) / s + 1;
  const Wide R = reverse ? D + Ke : D * s + Ke;
  MPSNN_CHECK(fits(Ke) && fits(D) && fits(R + S), ShapeError, ctx.context(), " window along ", axis, " (source ", S,
              ", kernel ", K, ", stride ", s, ", dilation ", d, ") overflows 64-bit index arithmetic");
}

}  // namespace

namespace {
void check_window_pad(const ShapeContext& ctx, const char* axis, int64_t S, int64_t D, int64_t K, int64_t s, int64_t d,
                      Wide pad_before, int64_t offset, bool reverse) {
  const Wide Ke = (Wide(K) - 1) * d + 1;
  const Wide read = reverse ? Wide(D) + Ke : Wide(D) * s + Ke;
  const Wide source = reverse ? (Wide(S) - 1) * s + 1 : Wide(S);
  MPSNN_CHECK(fits(pad_before) && fits(read) && fits(read - source - pad_before), ShapeError, ctx.context(),
              " window along ", axis, " (source ", S, ", result ", D, ", kernel ", K, ", stride ", s, ", dilation ", d,
              ", offset ", offset, ") overflows 64-bit index arithmetic");
}
}  // namespace

void check_window_range(const ShapeContext& ctx, const char* axis, int64_t S, int64_t D, int64_t K, int64_t s,
                        int64_t d, int64_t offset, bool reverse) {
  check_window_pad(ctx, axis, S, D, K, s, d, ((Wide(K) - 1) * d + 1) / 2 - offset, offset, reverse);
}

void check_paired_transpose_range(const ShapeContext& ctx, const char* axis, int64_t S, int64_t D, int64_t K,
                                  int64_t s, int64_t d, int64_t conv_pad_before) {
  const Wide Ke = (Wide(K) - 1) * d + 1;
  MPSNN_CHECK(fits(Ke), ShapeError, ctx.context(), " window along ", axis, " (kernel ", K, ", dilation ", d,
              ") overflows 64-bit index arithmetic");
  check_window_pad(ctx, axis, S, D, K, s, d, (Ke - 1) - conv_pad_before, 0, true);
}

void check_result_bytes(const ShapeContext& ctx, const ImageShape& out) {
  MPSNN_CHECK(out.checked_bytes(4) >= 0, ShapeError, ctx.context(), " result of ", out.w, "x", out.h, "x", out.c,
              " with ", out.n, " images needs more than 2^52 bytes");
}

std::string nchw_hint(const ImageShape& s, int64_t expected) {
  if (s.c == expected || s.h != expected) return "";
  return "; images are (N, H, W, C); was an (N, C, H, W) array passed? use a.transpose(0, 2, 3, 1) "
         "(a PyTorch tensor t: t.permute(0, 2, 3, 1).contiguous())";
}

void check_positive(const FilterNode& node, const char* what, int64_t value) {
  MPSNN_CHECK(value > 0, ShapeError, node.context(), " ", what, " is ", value, "; expected > 0");
}

ShapeResult window_shape(const ShapeContext& ctx, const WindowSpec& spec) {
  const ImageShape& src = ctx.sources.at(0);
  const PaddingPolicy& policy = *ctx.padding;
  const int method = policy.padding_method();
  MPSNN_CHECK((method & kSizeMask) != kSizeReserved && (method & kSizeMask & ~kSizeReserved) == 0 &&
                  (method & kAlignMask) != kAlignMask,
              ShapeError, ctx.context(), " padding method ", method,
              " uses a reserved size or alignment value; expected sizeValidOnly, sizeSame or sizeFull and an "
              "alignment other than 3");
  check_axis_range(ctx, "y", src.h, spec.kernel_h, spec.stride_y, spec.dilation_y, method, spec.reverse);
  check_axis_range(ctx, "x", src.w, spec.kernel_w, spec.stride_x, spec.dilation_x, method, spec.reverse);
  const AxisSize ay = resolve_axis(src.h, spec.kernel_h, spec.stride_y, spec.dilation_y, method, false, spec.reverse);
  const AxisSize ax = resolve_axis(src.w, spec.kernel_w, spec.stride_x, spec.dilation_x, method, true, spec.reverse);
  ImageShape out{src.n, ay.size, ax.size, spec.out_channels};
  KernelProps kernel;
  int64_t r_channel_offset = 0, r_channel_count = 0;  // 0: the whole source
  kernel.offset_x = ax.offset;
  kernel.offset_y = ay.offset;
  kernel.edge_mode = spec.edge_mode;
  kernel.kernel_width = spec.kernel_w;
  kernel.kernel_height = spec.kernel_h;
  kernel.stride_x = spec.stride_x;
  kernel.stride_y = spec.stride_y;
  kernel.dilation_x = spec.dilation_x;
  kernel.dilation_y = spec.dilation_y;
  kernel.is_backwards = spec.reverse;
  if (method & kCustom) {
    const ImageDescriptor d = policy.destination_image_descriptor(make_request(ctx), kernel, suggested_descriptor(out, ctx));
    out.w = d.width;
    out.h = d.height;
    MPSNN_CHECK(d.feature_channels == out.c, UnsupportedError, ctx.context(),
                " custom padding changed the result to ", d.feature_channels, " feature channels; the node produces ",
                out.c);
    MPSNN_CHECK(kernel.destination_feature_channel_offset == 0, UnsupportedError, ctx.context(),
                " custom padding set destination_feature_channel_offset ", kernel.destination_feature_channel_offset,
                "; the result image always starts at channel 0 here");
    const bool window = kernel.source_feature_channel_offset != 0 || kernel.source_feature_channel_max_count != INT64_MAX;
    MPSNN_CHECK(!window || spec.channel_window, UnsupportedError, ctx.context(),
                " custom padding set source_feature_channel_offset ", kernel.source_feature_channel_offset,
                " / source_feature_channel_max_count ", kernel.source_feature_channel_max_count,
                "; only convolution reads a channel window of its source on this backend");
    if (window) {
      const int64_t off = kernel.source_feature_channel_offset, max = kernel.source_feature_channel_max_count;
      MPSNN_CHECK(off >= 0 && off < src.c && max > 0, ShapeError, ctx.context(),
                  " custom padding set source_feature_channel_offset ", off, " and max count ", max, " for a source of ",
                  src.c, " feature channels; expected 0 <= offset < ", src.c, " and a count > 0");
      r_channel_offset = off;
      r_channel_count = std::min(max, src.c - off);
    }
  }
  MPSNN_CHECK(out.h > 0 && out.w > 0, ShapeError, ctx.context(), " result size is ", out.w, "x", out.h,
              " for a ", src.w, "x", src.h, " source with padding ", describe_padding_method(method), ", kernel ",
              spec.kernel_w, "x", spec.kernel_h, " and stride ", spec.stride_x, "x", spec.stride_y,
              "; expected a result of at least 1x1");
  check_result_bytes(ctx, out);
  check_window_range(ctx, "y", src.h, out.h, spec.kernel_h, spec.stride_y, spec.dilation_y, kernel.offset_y, spec.reverse);
  check_window_range(ctx, "x", src.w, out.w, spec.kernel_w, spec.stride_x, spec.dilation_x, kernel.offset_x, spec.reverse);
  ShapeResult r;
  r.out = out;
  r.geom.edge_mode = kernel.edge_mode;
  r.geom.source_channel_offset = r_channel_offset;
  r.geom.source_channel_count = r_channel_count;
  r.geom.exclude_edges = (method & kExcludeEdges) != 0;
  if (!spec.reverse) {
    r.geom.y = window_from_offset(src.h, out.h, spec.kernel_h, spec.stride_y, spec.dilation_y, kernel.offset_y);
    r.geom.x = window_from_offset(src.w, out.w, spec.kernel_w, spec.stride_x, spec.dilation_x, kernel.offset_x);
  } else {
    // Reverse filters: the window runs over the zero-inserted source (stride 1 there);
    // pad_before is Pz of nodes.md §4.3.
    auto rev = [](int64_t S, int64_t D, int64_t K, int64_t s, int64_t d, int64_t offset) {
      WindowAxis w;
      w.kernel = K;
      w.stride = s;
      w.dilation = d;
      w.pad_before = w.extent() / 2 - offset;
      w.pad_after = (D - 1) + w.extent() - ((S - 1) * s + 1) - w.pad_before;
      return w;
    };
    r.geom.y = rev(src.h, out.h, spec.kernel_h, spec.stride_y, spec.dilation_y, kernel.offset_y);
    r.geom.x = rev(src.w, out.w, spec.kernel_w, spec.stride_x, spec.dilation_x, kernel.offset_x);
  }
  return r;
}

ShapeResult same_shape(const ShapeContext& ctx, int64_t channels) {
  ShapeResult r;
  r.out = ctx.sources.at(0);
  if (channels > 0) r.out.c = channels;
  const PaddingPolicy& policy = *ctx.padding;
  if (policy.padding_method() & kCustom) {
    KernelProps kernel;
    const ImageDescriptor d = policy.destination_image_descriptor(make_request(ctx), kernel, suggested_descriptor(r.out, ctx));
    refuse_channel_window(kernel, ctx);
    MPSNN_CHECK(d.width == r.out.w && d.height == r.out.h && d.feature_channels == r.out.c, UnsupportedError,
                ctx.context(), " custom padding asked for a ", d.width, "x", d.height, "x", d.feature_channels,
                " result; this size-preserving node produces ", r.out.w, "x", r.out.h, "x", r.out.c);
  }
  return r;
}

ShapeResult fixed_shape(const ShapeContext& ctx, const ImageShape& out, bool resizable) {
  ShapeResult r;
  r.out = out;
  const PaddingPolicy& policy = *ctx.padding;
  if (policy.padding_method() & kCustom) {
    KernelProps kernel;
    const ImageDescriptor d = policy.destination_image_descriptor(make_request(ctx), kernel, suggested_descriptor(out, ctx));
    refuse_channel_window(kernel, ctx);
    MPSNN_CHECK(resizable || (d.width == out.w && d.height == out.h), UnsupportedError, ctx.context(),
                " custom padding asked for a ", d.width, "x", d.height, "x", d.feature_channels, " result; this node ",
                "produces ", out.w, "x", out.h, "x", out.c, " only");
    r.out.w = d.width;
    r.out.h = d.height;
    MPSNN_CHECK(d.feature_channels == out.c && d.width > 0 && d.height > 0, ShapeError, ctx.context(),
                " custom padding asked for a ", d.width, "x", d.height, "x", d.feature_channels,
                " result; expected a positive size with ", out.c, " feature channels");
  }
  return r;
}

}  // namespace mpsnn

namespace mpsnn {

const ResolvedNode& resolved_forward(const ShapeContext& ctx) {
  const auto& states = ctx.node.source_states();
  const StateNode* state = states.empty() ? nullptr : states[0].get();
  MPSNN_CHECK(state != nullptr, GraphError, ctx.context(), " has no gradient_state; expected the result_state of its forward node");
  const ResolvedNode* fwd = ctx.state_producer(state);
  MPSNN_CHECK(fwd != nullptr, GraphError, ctx.context(),
              " gradient_state comes from a node that is not part of this graph");
  MPSNN_CHECK(ctx.sources[0] == fwd->out, ShapeError, ctx.context(), " source gradient is ", ctx.sources[0].w, "x",
              ctx.sources[0].h, "x", ctx.sources[0].c, " (", ctx.sources[0].n, " images); expected the size of ",
              fwd->node->context(), "'s result, ", fwd->out.w, "x", fwd->out.h, "x", fwd->out.c, " (", fwd->out.n,
              " images)");
  for (size_t i = 1; i < ctx.sources.size() && i - 1 < fwd->sources.size(); ++i)
    MPSNN_CHECK(ctx.sources[i] == fwd->sources[i - 1], ShapeError, ctx.context(), " source image ", i, " is ",
                ctx.sources[i].w, "x", ctx.sources[i].h, "x", ctx.sources[i].c, "; expected the forward source ",
                fwd->sources[i - 1].w, "x", fwd->sources[i - 1].h, "x", fwd->sources[i - 1].c);
  return *fwd;
}

}  // namespace mpsnn
