#include "graph/data_source.h"

#include <cmath>
#include <cstring>

#include "core/errors.h"
#include "core/format.h"
#include "core/tensor_view.h"

namespace mpsnn {

const char* data_type_name(DataType t) {
  switch (t) {
    case DataType::float32: return "float32";
    case DataType::float16: return "float16";
    case DataType::int8: return "int8";
    case DataType::int16: return "int16";
    case DataType::uint8: return "uint8";
    case DataType::uint16: return "uint16";
    case DataType::uint32: return "uint32";
    case DataType::unorm1: return "unorm1";
    case DataType::unorm8: return "unorm8";
    default: return "invalid";
  }
}

size_t data_type_size(DataType t) {
  switch (t) {
    case DataType::float32:
    case DataType::uint32: return 4;
    case DataType::float16:
    case DataType::int16:
    case DataType::uint16: return 2;
    case DataType::int8:
    case DataType::uint8:
    case DataType::unorm8: return 1;
    default: return 0;
  }
}

namespace {

// load() ... purge() around a read, also when the read throws.
template <typename Source, typename Fn>
auto with_loaded(Source& source, const std::string& context, Fn&& fn) {
  MPSNN_CHECK(source.load(), GraphError, context, " data source load() returned False");
  struct Purge {
    Source& s;
    ~Purge() {
      try {
        s.purge();
      } catch (...) {
      }
    }
  } purge{source};
  return fn();
}

void check_descriptor(const ConvolutionDescriptor& d, const std::string& ctx) {
  auto pos = [&](const char* what, int64_t v) {
    MPSNN_CHECK(v > 0, ShapeError, ctx, " descriptor ", what, " is ", v, "; expected > 0");
  };
  pos("kernel_width", d.kernel_width);
  pos("kernel_height", d.kernel_height);
  pos("input_feature_channels", d.input_feature_channels);
  pos("output_feature_channels", d.output_feature_channels);
  pos("stride_in_pixels_x", d.stride_x);
  pos("stride_in_pixels_y", d.stride_y);
  pos("dilation_rate_x", d.dilation_x);
  pos("dilation_rate_y", d.dilation_y);
  pos("groups", d.groups);
  pos("sub_pixel_scale_factor", d.sub_pixel_scale_factor);
  if (d.depthwise) {
    MPSNN_CHECK(d.groups == 1, ShapeError, ctx, " depthwise descriptor has groups ", d.groups, "; expected 1");
    MPSNN_CHECK(d.output_feature_channels == d.input_feature_channels, UnsupportedError, ctx,
                " depthwise channel multiplier is ", d.output_feature_channels, "/", d.input_feature_channels,
                "; only a multiplier of 1 is supported");
  }
  MPSNN_CHECK(d.input_feature_channels % d.groups == 0 && d.output_feature_channels % d.groups == 0, ShapeError,
              ctx, " descriptor has ", d.input_feature_channels, " input and ", d.output_feature_channels,
              " output feature channels; both must divide by groups ", d.groups);
  if (d.groups > 1) {
    MPSNN_CHECK((d.input_feature_channels / d.groups) % 4 == 0 && (d.output_feature_channels / d.groups) % 4 == 0,
                ShapeError, ctx, " groups ", d.groups, " give ", d.input_feature_channels / d.groups, " input and ",
                d.output_feature_channels / d.groups,
                " output channels per group; MPS needs multiples of 4 per group when groups > 1");
  }
  const int64_t r = d.sub_pixel_scale_factor;
  // (r * r is formed only once r <= channels / r: no overflow for huge factors.)
  MPSNN_CHECK(r <= d.output_feature_channels / r && d.output_feature_channels % (r * r) == 0, ShapeError, ctx,
              " sub-pixel scale factor ", r, " needs output_feature_channels divisible by ", r, "^2; got ",
              d.output_feature_channels);
  // The weights (float32 after conversion; binary: one uint32 word per 32 input channels) must
  // have a byte count that fits: the counts below are computed in int64.
  const int64_t per_tap = d.depthwise ? 1 : d.input_feature_channels / d.groups;
  MPSNN_CHECK(checked_bytes({d.output_feature_channels, d.kernel_height, d.kernel_width, per_tap}, 4) >= 0, ShapeError,
              ctx, " descriptor of ", d.output_feature_channels, " x ", d.kernel_height, " x ", d.kernel_width, " x ",
              per_tap, " weights needs more than 2^52 bytes");
  if (d.batch_norm) {
    const auto& bn = *d.batch_norm;
    const size_t n = size_t(d.output_feature_channels);
    MPSNN_CHECK(bn.mean.size() == n && bn.variance.size() == n && bn.gamma.size() == n && bn.beta.size() == n,
                ShapeError, ctx, " batch normalization parameters have ", bn.mean.size(), "/", bn.variance.size(),
                "/", bn.gamma.size(), "/", bn.beta.size(), " entries; expected ", n, " each");
  }
}

}  // namespace

std::shared_ptr<ConvolutionParams> fold_batch_norm(const ConvolutionParams& conv, const std::vector<float>& mean,
                                                   const std::vector<float>& variance, const std::vector<float>& gamma,
                                                   const std::vector<float>& beta, float epsilon) {
  auto f = std::make_shared<ConvolutionParams>(conv);
  const size_t cout = size_t(conv.desc.output_feature_channels);
  const size_t per_out = f->weights.size() / cout;
  if (f->bias.empty()) f->bias.assign(cout, 0.0f);
  for (size_t o = 0; o < cout; ++o) {
    const double scale = double(gamma[o]) / std::sqrt(double(variance[o]) + double(epsilon));
    for (size_t i = 0; i < per_out; ++i) f->weights[o * per_out + i] = float(f->weights[o * per_out + i] * scale);
    f->bias[o] = float(scale * (double(f->bias[o]) - double(mean[o])) + double(beta[o]));
  }
  return f;
}

namespace {

std::string dims_text(const std::vector<int64_t>& v) {
  std::string t = "(";
  for (size_t i = 0; i < v.size(); ++i) t += (i ? ", " : "") + std::to_string(v[i]);
  return t + (v.size() == 1 ? ",)" : ")");
}

// `w` must hold at least `need` bytes: a shorter buffer is an error, a longer one is used
// (its first `need` bytes, as MPS reads a pointer) with a warning through the data source.
void check_length(ConvolutionDataSource& source, const HostArray& w, size_t need, size_t esize, const char* what,
                  const std::string& expected, const std::string& ctx) {
  MPSNN_CHECK(w.data != nullptr && w.bytes >= need, ShapeError, ctx, " weights have ", w.bytes / esize, " ", what,
              " values; expected ", need / esize, " ", expected);
  if (w.bytes > need)
    source.warn(detail::concat(ctx, " weights() returned ", w.bytes / esize, " ", what, " values; the descriptor needs ",
                               need / esize, " ", expected, ": the first ", need / esize,
                               " are used (MPS reads that many values from the pointer)"));
}

}  // namespace

void check_weights_shape(const ConvolutionDescriptor& d, const std::vector<int64_t>& shape, WeightsLayout layout,
                         const std::string& ctx) {
  if (shape.size() != 4) return;  // flat buffers (Apple passes a pointer) are read in OHWI order
  const int64_t o = d.output_feature_channels, kh = d.kernel_height, kw = d.kernel_width, g = d.groups;
  const int64_t i = layout == WeightsLayout::binary ? (d.input_feature_channels + 31) / 32
                    : d.depthwise                   ? 1
                                                    : d.input_feature_channels / g;
  const std::vector<int64_t> want{o, kh, kw, i};
  if (shape == want) return;
  std::string hint;
  if (layout == WeightsLayout::transpose) {
    // PyTorch ConvTranspose2d.weight is (Cin, Cout/groups, KH, KW); nodes.md §4.3: W[o, p, q, c'] =
    // wt[c, o', KH-1-p, KW-1-q] (in/out swapped and the kernel rotated 180 degrees).
    const int64_t cin = d.input_feature_channels, og = o / g, cg = cin / g;
    if (shape == std::vector<int64_t>{cin, og, kh, kw}) {
      if (g == 1)
        hint = "; this is PyTorch's ConvTranspose2d layout (Cin, Cout, KH, KW): pass "
               "np.ascontiguousarray(w.transpose(1, 2, 3, 0)[:, ::-1, ::-1, :]) (OHWI, kernel rotated 180 degrees, "
               "nodes.md §4.3)";
      else
        hint = detail::concat("; this is PyTorch's ConvTranspose2d layout (Cin, Cout/groups, KH, KW): pass "
                              "np.ascontiguousarray(w.reshape(", g, ", ", cg, ", ", og, ", ", kh, ", ", kw,
                              ").transpose(0, 2, 3, 4, 1)[:, :, ::-1, ::-1, :].reshape(", o, ", ", kh, ", ", kw, ", ", cg,
                              ")) (OHWI, kernel rotated 180 degrees, nodes.md §4.3)");
    }
    if (shape == std::vector<int64_t>{o, i, kh, kw})
      hint += std::string(hint.empty() ? "; " : "; or, ") +
              "if it is OIHW (Cout, Cin/groups, KH, KW), pass np.ascontiguousarray(w.transpose(0, 2, 3, 1))";
  } else if (shape == std::vector<int64_t>{o, i, kh, kw}) {
    hint = "; this is PyTorch's OIHW layout (Conv2d.weight): pass np.ascontiguousarray(w.transpose(0, 2, 3, 1))";
  }
  const int64_t have_n = shape[0] * shape[1] * shape[2] * shape[3], want_n = o * kh * kw * i;
  const std::string counts_have = have_n == want_n ? "" : " (" + std::to_string(have_n) + " values)";
  const std::string counts_want = have_n == want_n ? "" : " (" + std::to_string(want_n) + " values)";
  MPSNN_THROW(ShapeError, ctx, " weights array has shape ", dims_text(shape), counts_have, "; expected OHWI ",
              dims_text(want), counts_want, " (Cout, KH, KW, ",
              layout == WeightsLayout::binary ? "ceil(Cin/32)" : d.depthwise ? "1 (depthwise)" : "Cin/groups", ")",
              hint);
}

std::shared_ptr<const ConvolutionParams> read_convolution_source(ConvolutionDataSource& source, bool binary,
                                                                 const std::string& node_ctx, bool transpose) {
  return with_loaded(source, node_ctx, [&] {
    auto p = std::make_shared<ConvolutionParams>();
    p->desc = source.descriptor();
    p->label = source.label();
    // Errors name the node and, when it has a label, the data source.
    const std::string ctx = p->label && node_ctx.find("'" + *p->label + "'") == std::string::npos
                                ? node_ctx + " (data source '" + *p->label + "')"
                                : node_ctx;
    const ConvolutionDescriptor& d = p->desc;
    check_descriptor(d, ctx);
    const DataType type = source.data_type();
    HostArray w = source.weights();
    if (binary) {
      const int64_t words = d.output_feature_channels * d.kernel_height * d.kernel_width *
                            ((d.input_feature_channels + 31) / 32);
      MPSNN_CHECK(checked_bytes({d.output_feature_channels, d.kernel_height, d.kernel_width,
                                 (d.input_feature_channels + 31) / 32}, 4) >= 0,
                  ShapeError, ctx, " descriptor's bit-packed weights need more than 2^52 bytes");
      MPSNN_CHECK(type == DataType::uint32, DTypeError, ctx, " data source data_type is ", data_type_name(type),
                  "; binary convolution weights are bit-packed uint32");
      check_weights_shape(d, w.shape, WeightsLayout::binary, ctx);
      check_length(source, w, size_t(words) * 4, 4, "uint32", "([Cout][KH][KW][ceil(Cin/32)])", ctx);
      p->binary_weights.resize(size_t(words));
      std::memcpy(p->binary_weights.data(), w.data, size_t(words) * 4);
    } else {
      const int64_t count = weights_count(d), per_out = count / d.output_feature_channels;
      const size_t esize = data_type_size(type);
      MPSNN_CHECK(type == DataType::float32 || type == DataType::float16 || type == DataType::uint8, DTypeError, ctx,
                  " data source data_type is ", data_type_name(type), "; expected float32, float16 or uint8");
      check_weights_shape(d, w.shape, transpose ? WeightsLayout::transpose : WeightsLayout::ohwi, ctx);
      check_length(source, w, size_t(count) * esize, esize, data_type_name(type),
                   detail::concat("(", d.output_feature_channels, " x ", d.kernel_height, " x ", d.kernel_width, " x ",
                                  per_out / (d.kernel_height * d.kernel_width), ", OHWI)"),
                   ctx);
      p->weights.resize(size_t(count));
      if (type == DataType::float32) {
        std::memcpy(p->weights.data(), w.data, size_t(count) * 4);
      } else if (type == DataType::float16) {
        convert_to_float(ChannelFormat::float16, w.data, p->weights.data(), size_t(count));
      } else {
        auto u = static_cast<const uint8_t*>(w.data);
        const int q = source.weights_quantization_type();
        if (q == 1) {  // linear: per output channel (min, max)
          const auto ranges = source.ranges_for_uint8_kernel();
          MPSNN_CHECK(int64_t(ranges.size()) == 2 * d.output_feature_channels, ShapeError, ctx,
                      " ranges_for_uint8_kernel has ", ranges.size() / 2, " ranges; expected ",
                      d.output_feature_channels);
          for (int64_t i = 0; i < count; ++i) {
            const int64_t o = i / per_out;
            const float lo = ranges[size_t(2 * o)], hi = ranges[size_t(2 * o + 1)];
            p->weights[size_t(i)] = float(u[i]) / 255.0f * (hi - lo) + lo;
          }
        } else if (q == 2) {
          const auto lut = source.lookup_table_for_uint8_kernel();
          MPSNN_CHECK(lut.size() == 256, ShapeError, ctx, " lookup_table_for_uint8_kernel has ", lut.size(),
                      " entries; expected 256");
          for (int64_t i = 0; i < count; ++i) p->weights[size_t(i)] = lut[u[i]];
        } else {
          MPSNN_THROW(DTypeError, ctx, " uint8 weights need weights_quantization_type linear (1) or lookupTable (2); got ",
                      q);
        }
      }
      for (float v : p->weights)
        MPSNN_CHECK(std::isfinite(v), ShapeError, ctx, " weights contain a non-finite value (", v, ")");
    }
    if (auto b = source.bias_terms()) {
      MPSNN_CHECK(int64_t(b->size()) == d.output_feature_channels, ShapeError, ctx, " bias_terms has ", b->size(),
                  " values; expected ", d.output_feature_channels);
      p->bias = std::move(*b);
    }
    return std::shared_ptr<const ConvolutionParams>(p);
  });
}

std::shared_ptr<const NormalizationParams> read_normalization_source(NormalizationDataSource& source,
                                                                     bool with_statistics, const std::string& ctx) {
  return with_loaded(source, ctx, [&] {
    auto p = std::make_shared<NormalizationParams>();
    p->channels = source.number_of_feature_channels();
    MPSNN_CHECK(p->channels > 0, ShapeError, ctx, " number_of_feature_channels is ", p->channels, "; expected > 0");
    const size_t n = size_t(p->channels);
    auto take = [&](std::optional<std::vector<float>> v, float fill, const char* what) {
      if (!v) return std::vector<float>(n, fill);
      MPSNN_CHECK(v->size() == n, ShapeError, ctx, " ", what, " has ", v->size(), " values; expected ", n);
      return std::move(*v);
    };
    p->gamma = take(source.gamma(), 1.0f, "gamma");
    p->beta = take(source.beta(), 0.0f, "beta");
    if (with_statistics) {
      p->mean = take(source.mean(), 0.0f, "mean");
      p->variance = take(source.variance(), 1.0f, "variance");
      for (float v : p->variance)
        MPSNN_CHECK(v >= 0.0f, ShapeError, ctx, " variance contains ", v, "; expected values >= 0");
    }
    p->epsilon = source.epsilon().value_or(1.17549435e-38f);  // FLT_MIN, MPS's default
    p->label = source.label();
    return std::shared_ptr<const NormalizationParams>(p);
  });
}

}  // namespace mpsnn
