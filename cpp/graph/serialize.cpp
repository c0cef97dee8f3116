// The serialized format of graph/serialize.h: writer, bounds-checked reader, and the field list
// of every attrs type (one list serves writing, reading and describing a node in DOT pictures).
#include "graph/serialize.h"

#include <cstring>
#include <sstream>
#include <type_traits>
#include <unordered_map>

#include "core/errors.h"
#include "graph/gradients.h"
#include "graph/schema.h"

namespace mpsnn {

// ---- field lists: every attrs type of graph/attrs.h, and the structs inside them ----
// v(name, field) for each member, in a fixed order (the order of the format).

template <class V>
void fields(V& v, NeuronDescriptor& d) {
  v("type", d.type);
  v("a", d.a);
  v("b", d.b);
  v("c", d.c);
  v("data", d.data);
}
template <class V>
void fields(V& v, LossDescriptor& d) {
  v("type", d.type);
  v("reduction", d.reduction);
  v("weight", d.weight);
  v("label_smoothing", d.label_smoothing);
  v("number_of_classes", d.number_of_classes);
  v("epsilon", d.epsilon);
  v("delta", d.delta);
}
template <class V>
void fields(V& v, ConvolutionAttrs& a) {
  v("variant", a.variant);
  v("accumulator_precision", a.accumulator_precision);
  v("training_style", a.training_style);
}
template <class V>
void fields(V& v, BinaryConvolutionAttrs& a) {
  v("fully_connected", a.fully_connected);
  v("type", a.type);
  v("flags", a.flags);
  v("accumulator_precision", a.accumulator_precision);
  v("training_style", a.training_style);
  v("scale_value", a.scale_value);
  v("output_bias_terms", a.output_bias_terms);
  v("output_scale_terms", a.output_scale_terms);
  v("input_bias_terms", a.input_bias_terms);
  v("input_scale_terms", a.input_scale_terms);
}
template <class V>
void fields(V& v, PoolingAttrs& a) {
  v("mode", a.mode);
  v("kernel_width", a.kernel_width);
  v("kernel_height", a.kernel_height);
  v("stride_x", a.stride_x);
  v("stride_y", a.stride_y);
  v("dilation_x", a.dilation_x);
  v("dilation_y", a.dilation_y);
  v("edge_mode", a.edge_mode);
  v("zero_pad_size_x", a.zero_pad_size_x);
  v("zero_pad_size_y", a.zero_pad_size_y);
}
template <class V>
void fields(V& v, NeuronAttrs& a) {
  v("neuron", a.neuron);
}
template <class V>
void fields(V& v, SoftMaxAttrs& a) {
  v("log", a.log);
  v("gradient_reads_source", a.gradient_reads_source);
}
template <class V>
void fields(V& v, ArithmeticAttrs& a) {
  v("op", a.op);
  v("primary_scale", a.primary_scale);
  v("secondary_scale", a.secondary_scale);
  v("bias", a.bias);
  v("primary_strides", a.primary_strides);
  v("secondary_strides", a.secondary_strides);
  v("minimum_value", a.minimum_value);
  v("maximum_value", a.maximum_value);
  v("is_secondary_source_filter", a.is_secondary_source_filter);
}
template <class V>
void fields(V& v, ConcatenationAttrs& a) {
  v("source_index", a.source_index);
}
template <class V>
void fields(V& v, BatchNormalizationAttrs& a) {
  v("flags", a.flags);
  v("training_style", a.training_style);
}
template <class V>
void fields(V& v, InstanceNormalizationAttrs& a) {
  v("training_style", a.training_style);
}
template <class V>
void fields(V& v, NormalizationAttrs& a) {
  v("mode", a.mode);
  v("kernel_width", a.kernel_width);
  v("kernel_height", a.kernel_height);
  v("alpha", a.alpha);
  v("beta", a.beta);
  v("delta", a.delta);
  v("pm", a.pm);
  v("ps", a.ps);
  v("p0", a.p0);
}
template <class V>
void fields(V& v, DropoutAttrs& a) {
  v("keep_probability", a.keep_probability);
  v("seed", a.seed);
  v("mask_stride", a.mask_stride);
}
template <class V>
void fields(V& v, UpsamplingAttrs& a) {
  v("mode", a.mode);
  v("scale_factor_x", a.scale_factor_x);
  v("scale_factor_y", a.scale_factor_y);
  v("align_corners", a.align_corners);
}
template <class V>
void fields(V& v, ScaleAttrs& a) {
  v("mode", a.mode);
  v("output_width", a.output_width);
  v("output_height", a.output_height);
  v("output_depth", a.output_depth);
  v("transform_provider", a.transform_provider);
}
template <class V>
void fields(V& v, LossAttrs& a) {
  v("loss", a.loss);
}
template <class V>
void fields(V& v, YOLOLossAttrs& a) {
  v("xy", a.xy);
  v("wh", a.wh);
  v("confidence", a.confidence);
  v("classes", a.classes);
  v("reduction", a.reduction);
  v("rescore", a.rescore);
  v("scale_xy", a.scale_xy);
  v("scale_wh", a.scale_wh);
  v("scale_no_object", a.scale_no_object);
  v("scale_object", a.scale_object);
  v("scale_class", a.scale_class);
  v("min_iou_for_object_presence", a.min_iou_for_object_presence);
  v("max_iou_for_object_absence", a.max_iou_for_object_absence);
  v("number_of_anchor_boxes", a.number_of_anchor_boxes);
  v("anchor_boxes", a.anchor_boxes);
}
template <class V>
void fields(V& v, ConvertAttrs& a) {
  v("from", a.from);
  v("to", a.to);
}
template <class V>
void fields(V& v, FillAttrs& a) {
  v("pattern", a.pattern);
}
template <class V>
void fields(V& v, ConvolutionDescriptor::FoldedBatchNorm& b) {
  v("mean", b.mean);
  v("variance", b.variance);
  v("gamma", b.gamma);
  v("beta", b.beta);
  v("epsilon", b.epsilon);
}
template <class V>
void fields(V& v, ConvolutionDescriptor& d) {
  v("kernel_width", d.kernel_width);
  v("kernel_height", d.kernel_height);
  v("input_feature_channels", d.input_feature_channels);
  v("output_feature_channels", d.output_feature_channels);
  v("stride_x", d.stride_x);
  v("stride_y", d.stride_y);
  v("dilation_x", d.dilation_x);
  v("dilation_y", d.dilation_y);
  v("groups", d.groups);
  v("depthwise", d.depthwise);
  v("sub_pixel_scale_factor", d.sub_pixel_scale_factor);
  v("fused_neuron", d.fused_neuron);
  v("batch_norm", d.batch_norm);
  v("batch_norm_folded", d.batch_norm_folded);
}

template <class V>
void fields(V& v, OptimizerDescriptor& d) {
  v("learning_rate", d.learning_rate);
  v("gradient_rescale", d.gradient_rescale);
  v("apply_gradient_clipping", d.apply_gradient_clipping);
  v("gradient_clip_max", d.gradient_clip_max);
  v("gradient_clip_min", d.gradient_clip_min);
  v("regularization_type", d.regularization_type);
  v("regularization_scale", d.regularization_scale);
}
// The settings of an optimizer record (its moments are written after them).
template <class V>
void fields(V& v, OptimizerRecord& o) {
  v("rule", o.rule);
  v("descriptor", o.desc);
  v("momentum_scale", o.momentum_scale);
  v("use_nesterov_momentum", o.nesterov);
  v("decay", o.decay);
  v("epsilon", o.epsilon);
  v("beta1", o.beta1);
  v("beta2", o.beta2);
  v("time_step", o.time_step);
  v("amsgrad", o.amsgrad);
}

OptimizerRecord OptimizerRecord::of(const Optimizer& o) {
  OptimizerRecord r;
  r.rule = o.rule();
  r.desc = o.descriptor();
  r.momentum_scale = o.momentum_scale;
  r.nesterov = o.nesterov;
  r.decay = o.decay;
  r.epsilon = o.epsilon;
  r.beta1 = o.beta1;
  r.beta2 = o.beta2;
  r.time_step = o.time_step();
  return r;
}

void OptimizerRecord::apply_to(Optimizer& o) const {
  o.momentum_scale = momentum_scale;
  o.nesterov = nesterov;
  o.decay = decay;
  o.epsilon = epsilon;
  o.beta1 = beta1;
  o.beta2 = beta2;
  o.set_time_step(time_step);
}

// The moment lists a rule keeps (python/mpsnn/data_sources.py's _Trainer makes the same), in order.
std::vector<std::string> moment_lists(const OptimizerRecord& o) {
  switch (o.rule) {
    case OptimizerRule::sgd:
      if (o.momentum_scale != 0.0f) return {"input_momentum_vectors"};
      return {};
    case OptimizerRule::rmsprop: return {"input_sum_of_squares_vectors"};
    case OptimizerRule::adam:
      if (o.amsgrad) return {"input_momentum_vectors", "input_velocity_vectors", "maximum_velocity_vectors"};
      return {"input_momentum_vectors", "input_velocity_vectors"};
  }
  return {};
}

// The largest raw value of each enumeration (values are 0..max).
template <class E>
constexpr int enum_max();
template <> constexpr int enum_max<NeuronType>() { return int(NeuronType::gelu); }
template <> constexpr int enum_max<EdgeMode>() { return int(EdgeMode::constant); }
template <> constexpr int enum_max<TrainingStyle>() { return int(TrainingStyle::update_device_gpu); }
template <> constexpr int enum_max<ConvolutionVariant>() { return int(ConvolutionVariant::transpose); }
template <> constexpr int enum_max<BinaryConvolutionType>() { return int(BinaryConvolutionType::and_); }
template <> constexpr int enum_max<PoolingMode>() { return int(PoolingMode::dilated_max); }
template <> constexpr int enum_max<ArithmeticOp>() { return int(ArithmeticOp::divide); }
template <> constexpr int enum_max<BatchNormalizationFlags>() { return int(BatchNormalizationFlags::never); }
template <> constexpr int enum_max<NormalizationMode>() { return int(NormalizationMode::local_contrast); }
template <> constexpr int enum_max<UpsamplingMode>() { return int(UpsamplingMode::bilinear); }
template <> constexpr int enum_max<ScaleMode>() { return int(ScaleMode::lanczos); }
template <> constexpr int enum_max<LossType>() { return int(LossType::kullback_leibler_divergence); }
template <> constexpr int enum_max<ReductionType>() { return int(ReductionType::sum_by_non_zero_weights); }
template <> constexpr int enum_max<ChannelFormat>() { return int(ChannelFormat::float32); }
template <> constexpr int enum_max<RegularizationType>() { return int(RegularizationType::l2); }
template <> constexpr int enum_max<OptimizerRule>() { return int(OptimizerRule::adam); }

// Whether fields(V&, T&) exists (a struct with a field list).
template <class V, class T, class = void>
struct has_fields : std::false_type {};
template <class V, class T>
struct has_fields<V, T, std::void_t<decltype(fields(std::declval<V&>(), std::declval<T&>()))>> : std::true_type {};

// A default-constructed Attrs holding the attrs type op_list.def gives `kind`.
Attrs default_attrs(OpKind kind) {
  switch (kind) {
#define MPSNN_OP(k, name, attr_type, gradient) \
  case OpKind::k: return Attrs(attr_type{});
#include "graph/op_list.def"
#undef MPSNN_OP
    case OpKind::None: break;
  }
  MPSNN_THROW(GraphError, "[serialize] internal error: no attrs for op kind ", int(kind));
}

namespace {

constexpr char kMagic[8] = {'M', 'P', 'S', 'N', 'N', 'S', 'E', 'R'};
constexpr uint32_t kContentGraph = 1, kContentNodes = 2;
constexpr uint8_t kFreeLabels = 7;  // state record class of a loss's labels node

// ---- writer ----

class Writer {
 public:
  std::vector<uint8_t> out;
  void raw(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    out.insert(out.end(), b, b + n);
  }
  template <class T>
  void le(T v) {  // little-endian integers (this build's hosts are little-endian; bytes written explicitly)
    using U = std::make_unsigned_t<T>;
    U u = U(v);
    for (size_t i = 0; i < sizeof(T); ++i) out.push_back(uint8_t(u >> (8 * i)));
  }
  void u8(bool v) { out.push_back(v ? 1 : 0); }
  void byte(uint8_t v) { out.push_back(v); }
  void i32(int32_t v) { le(v); }
  void u32(uint32_t v) { le(v); }
  void i64(int64_t v) { le(v); }
  void u64(uint64_t v) { le(v); }
  void f32(float v) {
    uint32_t b;
    std::memcpy(&b, &v, 4);
    le(b);
  }
  void f64(double v) {
    uint64_t b;
    std::memcpy(&b, &v, 8);
    le(b);
  }
  void str(const std::string& s) {
    u32(uint32_t(s.size()));
    raw(s.data(), s.size());
  }
  void opt_str(const std::optional<std::string>& s) {
    u8(s.has_value());
    if (s) str(*s);
  }
  void floats(const std::vector<float>& v) {
    u64(v.size());
    for (float f : v) f32(f);
  }
  void words(const std::vector<uint32_t>& v) {
    u64(v.size());
    for (uint32_t w : v) u32(w);
  }
  size_t begin_section(const char tag[4]) {
    raw(tag, 4);
    const size_t at = out.size();
    u64(0);
    return at;
  }
  void end_section(size_t at) {
    const uint64_t n = out.size() - at - 8;
    for (size_t i = 0; i < 8; ++i) out[at + i] = uint8_t(n >> (8 * i));
  }
};

// Writes fields: each its name, then its value.
struct FieldWriter {
  Writer& w;
  std::string context;  // the node, for errors
  template <class T>
  void operator()(const char* name, T& value) {
    w.str(name);
    put(value);
  }
  void put(bool& v) { w.u8(v); }
  void put(int& v) { w.i32(v); }
  void put(int64_t& v) { w.i64(v); }
  void put(uint32_t& v) { w.u32(v); }
  void put(uint64_t& v) { w.u64(v); }
  void put(float& v) { w.f32(v); }
  void put(double& v) { w.f64(v); }
  void put(std::vector<float>& v) { w.floats(v); }
  template <class T, size_t N>
  void put(std::array<T, N>& a) {
    for (auto& x : a) put(x);
  }
  template <class T>
  void put(std::optional<T>& o) {
    w.u8(o.has_value());
    if (o) put(*o);
  }
  void put(std::shared_ptr<TransformProvider>& p) {
    MPSNN_CHECK(p == nullptr, UnsupportedError, context,
                " has a transform provider (Python code), which cannot be serialized; make the scale node with "
                "output_size only");
    w.u8(false);
  }
  template <class E, std::enable_if_t<std::is_enum_v<E>, int> = 0>
  void put(E& e) {
    w.i32(int32_t(e));
  }
  template <class S, std::enable_if_t<has_fields<FieldWriter, S>::value, int> = 0>
  void put(S& s) {
    fields(*this, s);
  }
};

// ---- reader ----

class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), end_(size) {}

  [[noreturn]] void fail(const std::string& what) const {
    MPSNN_THROW(SerializationError, "[", api, "] section '", section, "'", where(), " at byte offset ",
                pos_, ": ", what);
  }
  std::string where() const {
    std::string w;
    for (const auto& c : context) w += " " + c;
    return w.empty() ? w : "," + w;
  }
  size_t pos() const { return pos_; }
  size_t remaining() const { return end_ - pos_; }
  void need(size_t n, const char* what) const {
    if (remaining() < n)
      fail(detail::concat("truncated: ", what, " needs ", n, " bytes, ", remaining(), " left"));
  }
  template <class T>
  T le(const char* what) {
    need(sizeof(T), what);
    std::make_unsigned_t<T> u = 0;
    for (size_t i = 0; i < sizeof(T); ++i) u |= std::make_unsigned_t<T>(data_[pos_ + i]) << (8 * i);
    pos_ += sizeof(T);
    return T(u);
  }
  bool u8(const char* what) {
    need(1, what);
    const uint8_t b = data_[pos_];
    if (b > 1) fail(detail::concat(what, " is ", int(b), "; expected 0 or 1"));
    ++pos_;
    return b == 1;
  }
  uint8_t byte(const char* what) {
    need(1, what);
    return data_[pos_++];
  }
  int32_t i32(const char* what) { return le<int32_t>(what); }
  uint32_t u32(const char* what) { return le<uint32_t>(what); }
  int64_t i64(const char* what) { return le<int64_t>(what); }
  uint64_t u64(const char* what) { return le<uint64_t>(what); }
  float f32(const char* what) {
    const uint32_t b = le<uint32_t>(what);
    float f;
    std::memcpy(&f, &b, 4);
    return f;
  }
  double f64(const char* what) {
    const uint64_t b = le<uint64_t>(what);
    double d;
    std::memcpy(&d, &b, 8);
    return d;
  }
  std::string str(const char* what) {
    const uint32_t n = u32(what);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    if (!valid_utf8(s)) fail(detail::concat(what, " is not valid UTF-8"));
    pos_ += n;
    return s;
  }
  std::optional<std::string> opt_str(const char* what) {
    if (!u8(what)) return std::nullopt;
    return str(what);
  }
  // A count of `element_bytes`-sized items that must fit in what remains (no allocation first).
  size_t count(const char* what, size_t element_bytes, uint64_t n) const {
    if (element_bytes && n > remaining() / element_bytes)
      fail(detail::concat("truncated or corrupted: ", what, " claims ", n, " entries of ", element_bytes,
                          " bytes, ", remaining(), " bytes left"));
    return size_t(n);
  }
  size_t count32(const char* what, size_t min_element_bytes) { return count(what, min_element_bytes, u32(what)); }
  std::vector<float> floats(const char* what) {
    const size_t n = count(what, 4, u64(what));
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = f32(what);
    return v;
  }
  std::vector<uint32_t> words(const char* what) {
    const size_t n = count(what, 4, u64(what));
    std::vector<uint32_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = u32(what);
    return v;
  }

  // Enters section `tag`: the reader then stops at its end.
  void begin_section(const char tag[4]) {
    section = std::string(tag, strnlen(tag, 4));
    context.clear();
    need(12, "section header");
    if (std::memcmp(data_ + pos_, tag, 4) != 0)
      fail(detail::concat("expected section tag '", section, "', found ", printable(data_ + pos_, 4)));
    pos_ += 4;
    const uint64_t n = u64("section length");
    if (n > remaining()) fail(detail::concat("truncated: section length ", n, ", ", remaining(), " bytes left"));
    outer_end_ = end_;
    end_ = pos_ + size_t(n);
  }
  void end_section() {
    context.clear();
    if (pos_ != end_) fail(detail::concat(end_ - pos_, " unread bytes at the end of the section"));
    end_ = outer_end_;
  }
  void at_end() const {
    if (pos_ != end_) fail(detail::concat(end_ - pos_, " bytes after the END section"));
  }
  bool matches(const void* p, size_t n) const { return remaining() >= n && std::memcmp(data_ + pos_, p, n) == 0; }
  void skip(size_t n) {
    need(n, "bytes");
    pos_ += n;
  }

  std::string section = "header";
  std::vector<std::string> context;
  std::string api = "MPSNNGraph.from_bytes";  // what is loading, for messages
  uint32_t version = kSerializationVersion;   // of the data being read

  static std::string printable(const uint8_t* p, size_t n) {
    std::string s = "'";
    for (size_t i = 0; i < n; ++i) {
      const char c = char(p[i]);
      if (c >= 32 && c < 127) s += c;
      else s += detail::concat("\\x", "0123456789abcdef"[p[i] >> 4], "0123456789abcdef"[p[i] & 15]);
    }
    return s + "'";
  }

 private:
  static bool valid_utf8(const std::string& s) {
    size_t i = 0;
    const size_t n = s.size();
    while (i < n) {
      const auto c = uint8_t(s[i]);
      size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
      if (!len || i + len > n) return false;
      uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
      for (size_t k = 1; k < len; ++k) {
        const auto cc = uint8_t(s[i + k]);
        if ((cc >> 6) != 2) return false;
        cp = (cp << 6) | (cc & 0x3f);
      }
      const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
      if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
      i += len;
    }
    return true;
  }
  const uint8_t* data_;
  size_t end_, pos_ = 0, outer_end_ = 0;
};

// Scoped context entry of a Reader ("filter 3 (convolution)").
struct Where {
  Reader& r;
  Where(Reader& reader, std::string what) : r(reader) { r.context.push_back(std::move(what)); }
  ~Where() { r.context.pop_back(); }
};

// Reads fields: each name must be the expected one, then its value.
struct FieldReader {
  Reader& r;
  template <class T>
  void operator()(const char* name, T& value) {
    Where w(r, std::string("field '") + name + "'");
    const std::string found = r.str("field name");
    if (found != name) r.fail(detail::concat("expected field '", name, "', found '", found, "'"));
    get(value);
  }
  void get(bool& v) { v = r.u8("bool"); }
  void get(int& v) { v = r.i32("int32"); }
  void get(int64_t& v) { v = r.i64("int64"); }
  void get(uint32_t& v) { v = r.u32("uint32"); }
  void get(uint64_t& v) { v = r.u64("uint64"); }
  void get(float& v) { v = r.f32("float32"); }
  void get(double& v) { v = r.f64("float64"); }
  void get(std::vector<float>& v) { v = r.floats("float32 array"); }
  template <class T, size_t N>
  void get(std::array<T, N>& a) {
    for (auto& x : a) get(x);
  }
  template <class T>
  void get(std::optional<T>& o) {
    if (r.u8("optional flag")) {
      T v{};
      get(v);
      o = std::move(v);
    } else {
      o.reset();
    }
  }
  void get(std::shared_ptr<TransformProvider>& p) {
    if (r.u8("transform provider flag")) r.fail("a transform provider cannot be stored (must be 0)");
    p = nullptr;
  }
  template <class E, std::enable_if_t<std::is_enum_v<E>, int> = 0>
  void get(E& e) {
    const int32_t v = r.i32("enum");
    if (v < 0 || v > enum_max<E>()) r.fail(detail::concat("enum value ", v, " out of range 0..", enum_max<E>()));
    e = E(v);
  }
  template <class S, std::enable_if_t<has_fields<FieldReader, S>::value, int> = 0>
  void get(S& s) {
    fields(*this, s);
  }
};

OpKind kind_named(Reader& r, const std::string& name) {
  for (int k = 0; k < kNumOpKinds; ++k)
    if (name == op_name(OpKind(k))) {
      if (schema(OpKind(k)).internal) r.fail("kind '" + name + "' is internal to compiled plans");
      return OpKind(k);
    }
  r.fail("unknown node kind '" + name + "'");
}

// ---- what the writer collects ----

struct Collected {
  std::vector<FilterNodePtr> filters;  // topological order
  std::unordered_map<const FilterNode*, int32_t> filter_index;
  std::vector<ImageNodePtr> inputs;
  std::unordered_map<const ImageNode*, int32_t> input_index;
  std::vector<StateNodePtr> free_states;
  std::unordered_map<const StateNode*, int32_t> free_index;
  std::vector<HandlePtr> handles;
  std::unordered_map<const Handle*, int32_t> handle_index;
  std::vector<ConvolutionDataSource*> conv_sources;
  std::vector<std::pair<bool, bool>> conv_flags;  // binary, transpose
  std::unordered_map<const void*, int32_t> conv_index;
  std::vector<NormalizationDataSource*> norm_sources;
  std::vector<std::pair<bool, bool>> norm_flags;  // instance, with statistics
  std::unordered_map<const void*, int32_t> norm_index;
  const GraphDef* def = nullptr;  // frozen attrs and padding of a graph's nodes
  const SaveHooks* hooks = nullptr;

  int32_t handle(const HandlePtr& h) {
    if (!h) return -1;
    auto [it, fresh] = handle_index.emplace(h.get(), int32_t(handles.size()));
    if (fresh) handles.push_back(h);
    return it->second;
  }
  const Attrs& attrs_of(const FilterNode& f) const {
    if (def)
      if (auto it = def->frozen.find(&f); it != def->frozen.end()) return it->second.attrs;
    return f.attrs();
  }
  const PaddingPtr& padding_of(const FilterNode& f) const {
    if (def)
      if (auto it = def->frozen.find(&f); it != def->frozen.end()) return it->second.padding;
    return f.padding_policy();
  }

  // Everything upstream of `roots` (image and state links), producers before consumers.
  void collect(const std::vector<FilterNodePtr>& roots) {
    struct Frame {
      FilterNodePtr f;
      size_t next = 0;
    };
    std::unordered_map<const FilterNode*, bool> seen;
    for (const auto& root : roots) {
      if (!root || seen.count(root.get())) continue;
      std::vector<Frame> stack{{root}};
      seen[root.get()] = true;
      while (!stack.empty()) {
        Frame& top = stack.back();
        const auto& srcs = top.f->sources();
        const auto& states = top.f->source_states();
        if (top.next < srcs.size() + states.size()) {
          const size_t k = top.next++;
          FilterNodePtr up = k < srcs.size() ? srcs[k]->parent() : (states[k - srcs.size()] ? states[k - srcs.size()]->producer() : nullptr);
          if (up && !seen.count(up.get())) {
            seen[up.get()] = true;
            stack.push_back({up});
          }
          continue;
        }
        FilterNodePtr f = top.f;
        stack.pop_back();
        add(f);
      }
    }
  }
  void add(const FilterNodePtr& f) {
    filter_index[f.get()] = int32_t(filters.size());
    filters.push_back(f);
    for (const auto& s : f->sources())
      if (!s->parent() && !input_index.count(s.get())) {
        input_index[s.get()] = int32_t(inputs.size());
        inputs.push_back(s);
      }
    for (const auto& s : f->source_states())
      if (s && !s->producer() && !free_index.count(s.get())) {
        free_index[s.get()] = int32_t(free_states.size());
        free_states.push_back(s);
      }
    const bool transpose = (f->kind() == OpKind::Convolution || f->kind() == OpKind::ConvolutionGradient) &&
                           std::get<ConvolutionAttrs>(attrs_of(*f)).variant == ConvolutionVariant::transpose;
    if (f->convolution_source && !conv_index.count(f->convolution_source.get())) {
      conv_index[f->convolution_source.get()] = int32_t(conv_sources.size());
      conv_sources.push_back(f->convolution_source.get());
      conv_flags.emplace_back(f->kind() == OpKind::BinaryConvolution, transpose);
    }
    if (f->normalization_source && !norm_index.count(f->normalization_source.get())) {
      norm_index[f->normalization_source.get()] = int32_t(norm_sources.size());
      norm_sources.push_back(f->normalization_source.get());
      const bool instance = f->kind() == OpKind::InstanceNormalization || f->kind() == OpKind::InstanceNormalizationGradient;
      norm_flags.emplace_back(instance, !instance);
    }
  }
  void add_free_image(const ImageNodePtr& img) {
    if (!img->parent() && !input_index.count(img.get())) {
      input_index[img.get()] = int32_t(inputs.size());
      inputs.push_back(img);
    }
  }

  int32_t image_ref(const ImageNode* img) const {
    if (auto p = img->parent()) return filter_index.at(p.get());
    return -input_index.at(img) - 1;
  }
};

uint8_t allocator_code(const ImageAllocatorPtr& a, const std::string& context) {
  if (a == temporary_image_allocator()) return 1;
  if (a == persistent_image_allocator()) return 0;
  MPSNN_THROW(UnsupportedError, context,
              " has a custom image allocator (Python code), which cannot be serialized; use "
              "MPSImage.default_allocator() or MPSTemporaryImage.default_allocator()");
}

void write_image(Writer& w, Collected& c, const ImageNode& n, const std::string& context) {
  w.i32(c.handle(n.handle));
  w.i32(int32_t(n.format));
  w.byte(allocator_code(n.image_allocator, context));
  w.u8(n.export_from_graph);
  w.u8(n.synchronize_resource);
  w.u8(n.stop_gradient);
}

void write_state(Writer& w, Collected& c, const StateNode& n) {
  w.byte(uint8_t(n.state_class() == StateClass::loss_labels ? kFreeLabels : 0));
  w.i32(c.handle(n.handle));
  w.u8(n.export_from_graph);
  w.u8(n.synchronize_resource);
}

void write_state_ref(Writer& w, const Collected& c, const StateNodePtr& s, const std::string& context) {
  MPSNN_CHECK(s != nullptr, GraphError, context, " has a None source state");
  if (auto p = s->producer()) {
    auto states = p->result_states();
    for (size_t i = 0; i < states.size(); ++i)
      if (states[i].get() == s.get()) {
        w.byte(0);
        w.i32(c.filter_index.at(p.get()));
        w.i32(int32_t(i));
        return;
      }
    MPSNN_THROW(GraphError, context, " internal error: a state not among its producer's result states");
  }
  w.byte(1);
  w.i32(c.free_index.at(s.get()));
}

void write_padding(Writer& w, const PaddingPtr& p, const std::string& context) {
  auto* d = dynamic_cast<const DefaultPadding*>(p.get());
  MPSNN_CHECK(d != nullptr, UnsupportedError, context, " has a custom padding policy",
              p && p->label() ? " '" + *p->label() + "'" : std::string(),
              " (Python code), which cannot be serialized; use an MPSNNDefaultPadding");
  w.byte(uint8_t(d->kind()));
  w.i32(d->padding_method());
}

// A trainer record (optional): the settings, then the moment lists.
void write_optimizer(Writer& w, const std::optional<OptimizerRecord>& o, const std::string& context) {
  w.u8(o.has_value());
  if (!o) return;
  OptimizerRecord r = *o;
  FieldWriter fw{w, context};
  fields(fw, r);
  w.u32(uint32_t(r.moments.size()));
  for (const auto& [name, vectors] : r.moments) {
    w.str(name);
    w.u32(uint32_t(vectors.size()));
    for (const auto& v : vectors) w.floats(v);
  }
}

// The data sources, read as a graph reads them (load, read, purge), without folding.
void write_sources(Writer& w, const Collected& c) {
  w.u32(uint32_t(c.conv_sources.size()));
  for (size_t i = 0; i < c.conv_sources.size(); ++i) {
    const auto [binary, transpose] = c.conv_flags[i];
    auto p = read_convolution_source(*c.conv_sources[i], binary, "[convolution data source]", transpose);
    ConvolutionDescriptor d = p->desc;
    FieldWriter fw{w, "[convolution data source]"};
    fields(fw, d);
    w.u8(binary);
    w.u8(transpose);
    w.floats(p->weights);
    w.words(p->binary_weights);
    w.u8(!p->bias.empty());
    if (!p->bias.empty()) w.floats(p->bias);
    w.opt_str(p->label);
    const SourceTraining t = c.hooks && c.hooks->convolution ? c.hooks->convolution(*c.conv_sources[i]) : SourceTraining{};
    write_optimizer(w, t.optimizer, "[convolution data source]");
  }
  w.u32(uint32_t(c.norm_sources.size()));
  for (size_t i = 0; i < c.norm_sources.size(); ++i) {
    const auto [instance, stats] = c.norm_flags[i];
    auto p = read_normalization_source(*c.norm_sources[i], stats, "[normalization data source]");
    w.u8(instance);
    w.u8(stats);
    w.i64(p->channels);
    w.floats(p->gamma);
    w.floats(p->beta);
    w.floats(p->mean);
    w.floats(p->variance);
    w.f32(p->epsilon);
    w.opt_str(p->label);
    const SourceTraining t =
        c.hooks && c.hooks->normalization ? c.hooks->normalization(*c.norm_sources[i]) : SourceTraining{};
    write_optimizer(w, t.optimizer, "[normalization data source]");
    w.u8(t.statistics_momentum.has_value());
    if (t.statistics_momentum) w.f32(*t.statistics_momentum);
  }
}

void write_filter(Writer& w, Collected& c, const FilterNode& f) {
  const std::string ctx = f.context();
  w.str(op_name(f.kind()));
  w.opt_str(f.label);
  write_padding(w, c.padding_of(f), ctx);
  Attrs a = c.attrs_of(f);
  FieldWriter fw{w, ctx};
  std::visit([&](auto& x) { fields(fw, x); }, a);
  w.u32(uint32_t(f.sources().size()));
  for (const auto& s : f.sources()) w.i32(c.image_ref(s.get()));
  w.u32(uint32_t(f.source_states().size()));
  for (const auto& s : f.source_states()) write_state_ref(w, c, s, ctx);
  w.i32(f.convolution_source ? c.conv_index.at(f.convolution_source.get()) : -1);
  w.i32(f.normalization_source ? c.norm_index.at(f.normalization_source.get()) : -1);
  auto self = std::const_pointer_cast<FilterNode>(f.shared_from_this());
  write_image(w, c, *self->result_image(), ctx + " result image");
  auto states = self->result_states();
  w.u32(uint32_t(states.size()));
  for (const auto& s : states) write_state(w, c, *s);
}

// Sections NODE (into `nodes`) then HNDL and SRCS, which NODE fills; assembled in format order.
std::vector<uint8_t> assemble(Collected& c, uint32_t content, const std::function<void(Writer&)>& root) {
  Writer nodes;
  nodes.u32(uint32_t(c.inputs.size()));
  for (const auto& img : c.inputs) write_image(nodes, c, *img, "[graph input]");
  nodes.u32(uint32_t(c.free_states.size()));
  for (const auto& s : c.free_states) {
    MPSNN_CHECK(s->state_class() == StateClass::loss_labels, UnsupportedError,
                "[serialize] a state node without producer that is not a loss's labels node cannot be stored");
    write_state(nodes, c, *s);
  }
  nodes.u32(uint32_t(c.filters.size()));
  for (const auto& f : c.filters) write_filter(nodes, c, *f);
  Writer roots;
  root(roots);  // may add handles

  Writer w;
  w.raw(kMagic, 8);
  w.u32(kSerializationVersion);
  w.u32(content);
  size_t at = w.begin_section("HNDL");
  w.u32(uint32_t(c.handles.size()));
  for (const auto& h : c.handles) w.opt_str(h->label());
  w.end_section(at);
  at = w.begin_section("SRCS");
  write_sources(w, c);
  w.end_section(at);
  at = w.begin_section("NODE");
  w.raw(nodes.out.data(), nodes.out.size());
  w.end_section(at);
  at = w.begin_section("ROOT");
  w.raw(roots.out.data(), roots.out.size());
  w.end_section(at);
  at = w.begin_section("END\0");
  w.end_section(at);
  return std::move(w.out);
}

// ---- loading ----

struct Loaded {
  std::vector<HandlePtr> handles;
  std::vector<std::shared_ptr<ConvolutionDataSource>> conv;
  std::vector<bool> conv_binary, conv_transpose;
  std::vector<std::shared_ptr<NormalizationDataSource>> norm;
  std::vector<bool> norm_instance;
  std::vector<ImageNodePtr> inputs;
  std::vector<StateNodePtr> free_states;
  std::vector<FilterNodePtr> filters;
};

// Runs fn(); a typed error of the node model or a reader becomes a SerializationError at the
// reader's position (the decoded values were read, but are not a valid node or data source).
template <class Fn>
auto checked(Reader& r, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const SerializationError&) {
    throw;
  } catch (const ShapeError& e) {
    r.fail(std::string("invalid value: ") + e.what());
  } catch (const DTypeError& e) {
    r.fail(std::string("invalid value: ") + e.what());
  } catch (const GraphError& e) {
    r.fail(std::string("invalid value: ") + e.what());
  } catch (const UnsupportedError& e) {
    r.fail(std::string("invalid value: ") + e.what());
  }
}

HandlePtr read_handle_ref(Reader& r, const Loaded& l) {
  const int32_t h = r.i32("handle index");
  if (h == -1) return nullptr;
  if (h < 0 || size_t(h) >= l.handles.size())
    r.fail(detail::concat("handle index ", h, " out of range (", l.handles.size(), " handles)"));
  return l.handles[size_t(h)];
}

void read_image(Reader& r, const Loaded& l, ImageNode& n) {
  n.handle = read_handle_ref(r, l);
  const int32_t f = r.i32("format");
  if (f < 0 || f > enum_max<ChannelFormat>()) r.fail(detail::concat("format ", f, " out of range"));
  n.format = ChannelFormat(f);
  n.image_allocator = r.u8("allocator") ? temporary_image_allocator() : persistent_image_allocator();
  n.export_from_graph = r.u8("export_from_graph");
  n.synchronize_resource = r.u8("synchronize_resource");
  n.stop_gradient = r.u8("stop_gradient");
}

void read_state(Reader& r, const Loaded& l, StateNode& n, bool free) {
  const uint8_t cls = r.byte("state class");
  if (free && cls != kFreeLabels) r.fail(detail::concat("state class ", int(cls), "; a free state must be loss labels (7)"));
  if (!free && cls != (n.state_class() == StateClass::loss_labels ? kFreeLabels : 0))
    r.fail(detail::concat("state class ", int(cls), " does not match the node's result state"));
  n.handle = read_handle_ref(r, l);
  n.export_from_graph = r.u8("export_from_graph");
  n.synchronize_resource = r.u8("synchronize_resource");
}

void read_handles(Reader& r, Loaded& l, const LoadHooks& hooks) {
  r.begin_section("HNDL");
  const size_t n = r.count32("handle count", 1);
  for (size_t i = 0; i < n; ++i) {
    Where w(r, detail::concat("handle ", i));
    l.handles.push_back(hooks.handle(r.opt_str("label")));
  }
  r.end_section();
}

// A trainer record (optional) of a source whose parameter arrays have `sizes` elements: the
// rule's moment lists, in order, each with one vector per parameter array of its size.
std::optional<OptimizerRecord> read_optimizer(Reader& r, const std::vector<size_t>& sizes) {
  if (!r.u8("trainer flag")) return std::nullopt;
  Where w(r, "trainer");
  OptimizerRecord o;
  FieldReader fr{r};
  fields(fr, o);
  if (o.time_step < 0) r.fail(detail::concat("time_step is ", o.time_step, "; expected >= 0"));
  if (o.amsgrad && o.rule != OptimizerRule::adam) r.fail("amsgrad is set for an optimizer that is not Adam");
  const std::vector<std::string> expected = moment_lists(o);
  const size_t n = r.count32("moment list count", 8);
  if (n != expected.size()) r.fail(detail::concat(n, " moment lists; the optimizer keeps ", expected.size()));
  for (size_t k = 0; k < n; ++k) {
    const std::string name = r.str("moment list name");
    if (name != expected[k]) r.fail(detail::concat("moment list ", k, " is '", name, "'; expected '", expected[k], "'"));
    Where wl(r, name);
    const size_t m = r.count32("vector count", 8);
    if (m != sizes.size()) r.fail(detail::concat(m, " vectors; expected one per parameter array (", sizes.size(), ")"));
    std::vector<std::vector<float>> vectors;
    for (size_t i = 0; i < m; ++i) {
      vectors.push_back(r.floats("moment vector"));
      if (vectors.back().size() != sizes[i])
        r.fail(detail::concat("vector ", i, " has ", vectors.back().size(), " values; its parameters have ", sizes[i]));
    }
    o.moments.emplace_back(name, std::move(vectors));
  }
  return o;
}

void read_sources(Reader& r, Loaded& l, const LoadHooks& hooks) {
  r.begin_section("SRCS");
  const size_t nc = r.count32("convolution source count", 1);
  for (size_t i = 0; i < nc; ++i) {
    Where w(r, detail::concat("convolution source ", i));
    ConvolutionParams p;
    FieldReader fr{r};
    fields(fr, p.desc);
    const bool binary = r.u8("binary"), transpose = r.u8("transpose");
    p.weights = r.floats("weights");
    p.binary_weights = r.words("binary weights");
    const bool has_bias = r.u8("bias flag");
    if (has_bias) p.bias = r.floats("bias");
    p.label = r.opt_str("label");
    const auto& d = p.desc;
    for (auto [name, v] : {std::pair<const char*, int64_t>{"kernel_width", d.kernel_width}, {"kernel_height", d.kernel_height},
                           {"input_feature_channels", d.input_feature_channels},
                           {"output_feature_channels", d.output_feature_channels}, {"stride_x", d.stride_x},
                           {"stride_y", d.stride_y}, {"dilation_x", d.dilation_x}, {"dilation_y", d.dilation_y},
                           {"groups", d.groups}, {"sub_pixel_scale_factor", d.sub_pixel_scale_factor}})
      if (v < 1 || v > (int64_t(1) << 31)) r.fail(detail::concat("descriptor ", name, " is ", v, "; expected 1..2^31"));
    if (double(d.kernel_width) * double(d.kernel_height) * double(d.input_feature_channels) *
            double(d.output_feature_channels) > double(int64_t(1) << 40))
      r.fail("descriptor sizes give more than 2^40 weights");
    const int64_t expected = binary ? d.output_feature_channels * d.kernel_height * d.kernel_width *
                                          ((d.input_feature_channels + 31) / 32)
                                    : weights_count(d);
    const size_t stored = binary ? p.binary_weights.size() : p.weights.size();
    if (int64_t(stored) != expected)
      r.fail(detail::concat(stored, " weights stored; the descriptor gives ", expected));
    if (has_bias && int64_t(p.bias.size()) != d.output_feature_channels)
      r.fail(detail::concat("bias has ", p.bias.size(), " values; expected output_feature_channels = ",
                            d.output_feature_channels));
    if ((binary ? p.binary_weights.empty() : p.weights.empty()) || (binary ? !p.weights.empty() : !p.binary_weights.empty()))
      r.fail(binary ? "a binary source holds its weights as 32-bit words only" : "a source holds float32 weights only");
    if (!has_bias) p.bias.clear();
    SourceTraining training;
    if (r.version >= 2) {
      training.optimizer = read_optimizer(r, {p.weights.size(), p.bias.size()});
      if (training.optimizer && (binary || !has_bias))
        r.fail("a trainable convolution source holds float32 weights and biases");
    }
    auto src = checked(r, [&] { return hooks.convolution_source(p, binary, training); });
    // The reader a graph uses checks the decoded descriptor against the weights.
    checked(r, [&] { read_convolution_source(*src, binary, "[convolution data source]", transpose); });
    l.conv.push_back(src);
    l.conv_binary.push_back(binary);
    l.conv_transpose.push_back(transpose);
  }
  const size_t nn = r.count32("normalization source count", 1);
  for (size_t i = 0; i < nn; ++i) {
    Where w(r, detail::concat("normalization source ", i));
    NormalizationParams p;
    const bool instance = r.u8("instance"), stats = r.u8("with statistics");
    p.channels = r.i64("channels");
    p.gamma = r.floats("gamma");
    p.beta = r.floats("beta");
    p.mean = r.floats("mean");
    p.variance = r.floats("variance");
    p.epsilon = r.f32("epsilon");
    p.label = r.opt_str("label");
    if (p.channels < 1 || p.channels > (int64_t(1) << 31)) r.fail(detail::concat("channels is ", p.channels, "; expected 1..2^31"));
    for (auto [name, v] : {std::pair<const char*, const std::vector<float>*>{"gamma", &p.gamma}, {"beta", &p.beta},
                           {"mean", &p.mean}, {"variance", &p.variance}})
      if (!v->empty() && int64_t(v->size()) != p.channels)
        r.fail(detail::concat(name, " has ", v->size(), " values; expected channels = ", p.channels));
    if (instance == stats) r.fail("an instance normalization source has no statistics, a batch normalization source has");
    SourceTraining training;
    if (r.version >= 2) {
      training.optimizer = read_optimizer(r, {size_t(p.channels), size_t(p.channels)});
      if (r.u8("statistics momentum flag")) training.statistics_momentum = r.f32("statistics momentum");
      if (training.optimizer && (p.gamma.empty() || p.beta.empty()))
        r.fail("a trainable normalization source holds gamma and beta");
    }
    auto src = checked(r, [&] { return hooks.normalization_source(p, instance, training); });
    checked(r, [&] { read_normalization_source(*src, stats, "[normalization data source]"); });
    l.norm.push_back(src);
    l.norm_instance.push_back(instance);
  }
  r.end_section();
}

ImageNodePtr read_image_ref(Reader& r, const Loaded& l, size_t before) {
  const int32_t ref = r.i32("image reference");
  if (ref >= 0) {
    if (size_t(ref) >= before)
      r.fail(detail::concat("image reference to filter ", ref, "; only filters 0..", int64_t(before) - 1, " come before"));
    return l.filters[size_t(ref)]->result_image();
  }
  const int64_t input = -int64_t(ref) - 1;
  if (size_t(input) >= l.inputs.size())
    r.fail(detail::concat("image reference to graph input ", input, "; there are ", l.inputs.size()));
  return l.inputs[size_t(input)];
}

StateNodePtr read_state_ref(Reader& r, const Loaded& l, size_t before) {
  const uint8_t tag = r.byte("state reference");
  if (tag == 0) {
    const int32_t f = r.i32("state producer");
    const int32_t i = r.i32("state index");
    if (f < 0 || size_t(f) >= before) r.fail(detail::concat("state reference to filter ", f, "; only ", before, " come before"));
    auto states = l.filters[size_t(f)]->result_states();
    if (i < 0 || size_t(i) >= states.size())
      r.fail(detail::concat("state index ", i, "; filter ", f, " has ", states.size(), " result states"));
    return states[size_t(i)];
  }
  if (tag != 1) r.fail(detail::concat("state reference tag ", int(tag), "; expected 0 or 1"));
  const int32_t s = r.i32("free state index");
  if (s < 0 || size_t(s) >= l.free_states.size())
    r.fail(detail::concat("free state index ", s, "; there are ", l.free_states.size()));
  return l.free_states[size_t(s)];
}

PaddingPtr read_padding(Reader& r) {
  Where w(r, "padding");
  const uint8_t kind = r.byte("padding kind");
  const int32_t method = r.i32("padding method");
  switch (kind) {
    case 0: return checked(r, [&] { return PaddingPtr(DefaultPadding::with_method(method)); });
    case 1:
    case 2: {
      auto p = DefaultPadding::tensorflow_average_pooling(kind == 2);
      if (p->padding_method() != method) r.fail(detail::concat("padding method ", method, " does not match its kind"));
      return p;
    }
    default: r.fail(detail::concat("padding kind ", int(kind), "; expected 0, 1 or 2"));
  }
}

void read_filter(Reader& r, Loaded& l, size_t index) {
  Where w(r, detail::concat("filter ", index));
  const std::string name = r.str("kind");
  const OpKind kind = kind_named(r, name);
  Where wk(r, "(" + name + ")");
  auto label = r.opt_str("label");
  PaddingPtr padding = read_padding(r);
  Attrs attrs = default_attrs(kind);
  FieldReader fr{r};
  std::visit([&](auto& x) { fields(fr, x); }, attrs);
  std::vector<ImageNodePtr> sources(r.count32("source count", 4));
  for (auto& s : sources) s = read_image_ref(r, l, index);
  std::vector<StateNodePtr> states(r.count32("source state count", 5));
  for (auto& s : states) s = read_state_ref(r, l, index);
  const int32_t ci = r.i32("convolution source index"), ni = r.i32("normalization source index");
  if (ci < -1 || ci >= int32_t(l.conv.size())) r.fail(detail::concat("convolution source index ", ci, " out of range"));
  if (ni < -1 || ni >= int32_t(l.norm.size())) r.fail(detail::concat("normalization source index ", ni, " out of range"));
  FilterNodePtr f = checked(r, [&] { return make_filter_node(kind, std::move(attrs), std::move(sources), std::move(states)); });
  f->label = std::move(label);
  checked(r, [&] { f->set_padding_policy(padding); });
  if (ci >= 0) {
    const bool transpose = (kind == OpKind::Convolution || kind == OpKind::ConvolutionGradient) &&
                           f->attrs_as<ConvolutionAttrs>().variant == ConvolutionVariant::transpose;
    if (l.conv_binary[size_t(ci)] != (kind == OpKind::BinaryConvolution) || l.conv_transpose[size_t(ci)] != transpose)
      r.fail(detail::concat("convolution source ", ci, " was stored for another kind of node"));
    f->set_data_source(l.conv[size_t(ci)]);
  }
  if (ni >= 0) {
    const bool instance = kind == OpKind::InstanceNormalization || kind == OpKind::InstanceNormalizationGradient;
    if (l.norm_instance[size_t(ni)] != instance)
      r.fail(detail::concat("normalization source ", ni, " was stored for another kind of node"));
    f->set_data_source(l.norm[size_t(ni)]);
  }
  {
    Where wi(r, "result image");
    read_image(r, l, *f->result_image());
  }
  auto result_states = f->result_states();
  const size_t ns = r.u32("result state count");
  if (ns != result_states.size())
    r.fail(detail::concat(ns, " result states stored; a ", name, " node has ", result_states.size()));
  for (size_t i = 0; i < ns; ++i) {
    Where ws(r, detail::concat("result state ", i));
    read_state(r, l, *result_states[i], false);
  }
  l.filters.push_back(std::move(f));
}

// Header, HNDL, SRCS and NODE; the reader is left at ROOT.
Loaded read_nodes(Reader& r, uint32_t content, const LoadHooks& hooks) {
  if (!r.matches(kMagic, 8)) {
    r.need(8, "magic");
    r.fail("not an mpsnn serialized graph (magic " + Reader::printable(reinterpret_cast<const uint8_t*>(kMagic), 8) +
           " expected)");
  }
  r.skip(8);
  const uint32_t version = r.u32("format version");
  if (version < 1 || version > kSerializationVersion)
    r.fail(detail::concat("format version ", version, "; this build reads versions 1 to ", kSerializationVersion));
  r.version = version;
  const uint32_t found = r.u32("content");
  if (found != content)
    r.fail(found == kContentGraph   ? "these bytes hold an MPSNNGraph (load with MPSNNGraph.from_bytes)"
           : found == kContentNodes ? "these bytes hold nodes, not an MPSNNGraph"
                                    : detail::concat("content ", found, "; expected ", content));
  Loaded l;
  read_handles(r, l, hooks);
  read_sources(r, l, hooks);
  r.begin_section("NODE");
  const size_t ni = r.count32("graph input count", 15);
  for (size_t i = 0; i < ni; ++i) {
    Where w(r, detail::concat("graph input ", i));
    auto img = std::make_shared<ImageNode>();
    read_image(r, l, *img);
    l.inputs.push_back(img);
  }
  const size_t ns = r.count32("free state count", 7);
  for (size_t i = 0; i < ns; ++i) {
    Where w(r, detail::concat("free state ", i));
    auto s = std::make_shared<LabelsNode>();
    read_state(r, l, *s, true);
    l.free_states.push_back(s);
  }
  const size_t nf = r.count32("filter count", 20);
  for (size_t i = 0; i < nf; ++i) read_filter(r, l, i);
  r.end_section();
  return l;
}

void read_end(Reader& r) {
  r.begin_section("END\0");
  r.end_section();
  r.at_end();
}

}  // namespace

std::vector<uint8_t> graph_to_bytes(const NNGraph& graph, const GraphExtras& extras, const SaveHooks& hooks) {
  const GraphDef& def = graph.definition();
  Collected c;
  c.def = &def;
  c.hooks = &hooks;
  std::vector<FilterNodePtr> roots;
  for (const auto& r : def.results)
    if (auto p = r->parent()) roots.push_back(p);
  c.collect(roots);
  for (const auto& r : def.results) c.add_free_image(r);
  const CompileOptions opts = graph.options();
  const ImageAllocatorPtr dest = graph.destination_image_allocator();
  return assemble(c, kContentGraph, [&](Writer& w) {
    w.u32(uint32_t(def.results.size()));
    for (const auto& r : def.results) w.i32(c.image_ref(r.get()));
    for (size_t i = 0; i < def.results.size(); ++i) w.u8(def.results_needed[i]);
    w.u8(extras.multi_result);
    w.i32(int32_t(graph.format()));
    w.byte(allocator_code(dest, "[MPSNNGraph] destination_image_allocator"));
    w.u8(graph.output_state_is_temporary);
    w.str(graph.label);
    w.i32(graph.kernel_options);
    w.u8(opts.fuse);
    w.u8(opts.poison_temporaries);
  });
}

std::shared_ptr<NNGraph> graph_from_bytes(const uint8_t* data, size_t size, const DevicePtr& device,
                                          const KernelRegistry* registry, const LoadHooks& hooks, GraphExtras* extras) {
  Reader r(data, size);
  Loaded l = read_nodes(r, kContentGraph, hooks);
  r.begin_section("ROOT");
  const size_t n = r.count32("result count", 5);
  if (n == 0) r.fail("a graph has at least one result");
  std::vector<ImageNodePtr> results(n);
  for (auto& img : results) img = read_image_ref(r, l, l.filters.size());
  std::vector<bool> needed(n);
  for (size_t i = 0; i < n; ++i) needed[i] = r.u8("result needed");
  const bool multi = r.u8("several results");
  if (!multi && n != 1) r.fail(detail::concat(n, " results for the one-result initializer"));
  const int32_t format = r.i32("format");
  if (format < 0 || format > enum_max<ChannelFormat>()) r.fail(detail::concat("format ", format, " out of range"));
  const bool dest_temporary = r.u8("destination allocator");
  const bool state_temporary = r.u8("output_state_is_temporary");
  std::string label = r.str("label");
  const int32_t options = r.i32("options");
  CompileOptions opts;
  opts.fuse = r.u8("fusion enabled");
  opts.poison_temporaries = r.u8("poison temporaries");
  r.end_section();
  read_end(r);
  auto g = checked(r, [&] { return std::make_shared<NNGraph>(device, results, needed, registry); });
  checked(r, [&] { g->set_format(ChannelFormat(format)); });
  g->set_destination_image_allocator(dest_temporary ? temporary_image_allocator() : persistent_image_allocator());
  g->output_state_is_temporary = state_temporary;
  g->label = std::move(label);
  g->kernel_options = options;
  g->set_options(opts);
  if (extras) extras->multi_result = multi;
  return g;
}

std::vector<uint8_t> nodes_to_bytes(const NodeRoot& root, const SaveHooks& hooks) {
  Collected c;
  c.hooks = &hooks;
  FilterNodePtr top = root.filter;
  if (!top && root.image) top = root.image->parent();
  if (!top && root.state) top = root.state->producer();
  if (top) c.collect({top});
  if (root.image) c.add_free_image(root.image);
  if (root.state && !root.state->producer()) {
    MPSNN_CHECK(root.state->state_class() == StateClass::loss_labels, UnsupportedError,
                "[serialize] a state node without producer that is not a loss's labels node cannot be stored");
    c.free_index[root.state.get()] = int32_t(c.free_states.size());
    c.free_states.push_back(root.state);
  }
  return assemble(c, kContentNodes, [&](Writer& w) {
    if (root.filter) {
      w.byte(0);
      w.i32(c.filter_index.at(root.filter.get()));
    } else if (root.image) {
      w.byte(1);
      w.i32(c.image_ref(root.image.get()));
    } else {
      w.byte(2);
      write_state_ref(w, c, root.state, "[serialize]");
    }
  });
}

NodeRoot nodes_from_bytes(const uint8_t* data, size_t size, const LoadHooks& hooks) {
  Reader r(data, size);
  r.api = "mpsnn node unpickling";
  Loaded l = read_nodes(r, kContentNodes, hooks);
  r.begin_section("ROOT");
  NodeRoot root;
  const uint8_t what = r.byte("root kind");
  if (what == 0) {
    const int32_t f = r.i32("root filter");
    if (f < 0 || size_t(f) >= l.filters.size()) r.fail(detail::concat("root filter ", f, " out of range"));
    root.filter = l.filters[size_t(f)];
  } else if (what == 1) {
    root.image = read_image_ref(r, l, l.filters.size());
  } else if (what == 2) {
    root.state = read_state_ref(r, l, l.filters.size());
  } else {
    r.fail(detail::concat("root kind ", int(what), "; expected 0, 1 or 2"));
  }
  r.end_section();
  read_end(r);
  return root;
}

// ---- DOT pictures ----

namespace {

std::string dot_escape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    if (ch == '"' || ch == '\\') o += '\\';
    if (ch == '\n') {
      o += "\\n";
      continue;
    }
    o += ch;
  }
  return o;
}

// "name=value" for the fields of an attrs value that differ from the kind's defaults.
struct FieldPrinter {
  std::vector<std::pair<std::string, std::string>> out;
  std::string prefix;
  template <class T>
  void operator()(const char* name, T& value) {
    const std::string saved = prefix;
    prefix = prefix + name;
    print(value);
    prefix = saved;
  }
  void emit(const std::string& v) { out.emplace_back(prefix, v); }
  void print(bool& v) { emit(v ? "true" : "false"); }
  void print(int& v) { emit(std::to_string(v)); }
  void print(int64_t& v) { emit(std::to_string(v)); }
  void print(uint32_t& v) { emit(std::to_string(v)); }
  void print(uint64_t& v) { emit(std::to_string(v)); }
  void print(float& v) { emit(detail::concat(v)); }
  void print(double& v) { emit(detail::concat(v)); }
  void print(std::vector<float>& v) { emit(detail::concat(v.size(), " values")); }
  template <class T, size_t N>
  void print(std::array<T, N>& a) {
    std::string s = "(";
    for (size_t i = 0; i < N; ++i) s += (i ? ", " : "") + std::to_string(a[i]);
    emit(s + ")");
  }
  template <class T>
  void print(std::optional<T>& o) {
    if (o) print(*o);
    else emit("none");
  }
  void print(std::shared_ptr<TransformProvider>& p) { emit(p ? "custom" : "none"); }
  template <class E, std::enable_if_t<std::is_enum_v<E>, int> = 0>
  void print(E& e) {
    if constexpr (std::is_same_v<E, NeuronType>) emit(neuron_name(e));
    else if constexpr (std::is_same_v<E, LossType>) emit(loss_type_name(e));
    else if constexpr (std::is_same_v<E, ReductionType>) emit(reduction_type_name(e));
    else emit(std::to_string(int(e)));
  }
  template <class S, std::enable_if_t<has_fields<FieldPrinter, S>::value, int> = 0>
  void print(S& s) {
    prefix += ".";
    fields(*this, s);
    prefix.pop_back();
  }
};

std::vector<std::string> changed_fields(const Attrs& attrs, OpKind kind) {
  FieldPrinter now, defaults;
  Attrs a = attrs, d = default_attrs(kind);
  std::visit([&](auto& x) { fields(now, x); }, a);
  std::visit([&](auto& x) { fields(defaults, x); }, d);
  std::vector<std::string> out;
  for (size_t i = 0; i < now.out.size(); ++i)
    if (i >= defaults.out.size() || now.out[i] != defaults.out[i]) out.push_back(now.out[i].first + "=" + now.out[i].second);
  return out;
}

std::string shape_text(const ImageShape& s) { return detail::concat(s.n, "x", s.h, "x", s.w, "x", s.c); }

std::string handle_text(const HandlePtr& h) {
  if (!h) return "";
  auto l = h->label();
  return l ? *l : std::string("(handle without label)");
}

}  // namespace

std::string graph_to_dot(const NNGraph& graph, const DotNames& names, const Plan* shapes_from) {
  const GraphDef& def = graph.definition();
  std::ostringstream os;
  os << "digraph MPSNNGraph {\n  graph [rankdir=TB, fontname=\"Helvetica\", label=\""
     << dot_escape(graph.label.empty() ? "MPSNNGraph" : "MPSNNGraph '" + graph.label + "'") << "\"];\n"
     << "  node [fontname=\"Helvetica\", fontsize=10];\n  edge [fontname=\"Helvetica\", fontsize=9];\n";
  std::unordered_map<const ImageNode*, std::string> image_id;
  std::unordered_map<const StateNode*, std::string> state_id;
  auto image_node = [&](const ImageNode* img, const std::string& role) {
    auto [it, fresh] = image_id.emplace(img, "image" + std::to_string(image_id.size()));
    if (!fresh) return it->second;
    std::string text = "MPSNNImageNode";
    if (!role.empty()) text += "\n" + role;
    if (img->handle) text += "\nhandle: " + handle_text(img->handle);
    if (shapes_from)
      if (const ImageShape* s = shapes_from->shape_of(img)) text += "\n" + shape_text(*s);
    if (img->format != ChannelFormat::none) text += detail::concat("\nformat ", int(img->format));
    if (img->export_from_graph) text += "\nexported";
    if (img->stop_gradient) text += "\nstop_gradient";
    os << "  " << it->second << " [shape=ellipse, label=\"" << dot_escape(text) << "\"];\n";
    return it->second;
  };
  auto state_node = [&](const StateNode* s) {
    auto [it, fresh] = state_id.emplace(s, "state" + std::to_string(state_id.size()));
    if (!fresh) return it->second;
    std::string text = names.state(*s);
    if (s->handle) text += "\nhandle: " + handle_text(s->handle);
    if (s->export_from_graph) text += "\nexported";
    os << "  " << it->second << " [shape=diamond, label=\"" << dot_escape(text) << "\"];\n";
    return it->second;
  };
  for (size_t i = 0; i < def.source_images.size(); ++i) image_node(def.source_images[i].get(), detail::concat("source ", i));
  std::unordered_map<const FilterNode*, std::string> filter_id;
  for (size_t i = 0; i < def.filters.size(); ++i) filter_id[def.filters[i].get()] = "filter" + std::to_string(i);
  for (size_t i = 0; i < def.filters.size(); ++i) {
    const FilterNode& f = *def.filters[i];
    const auto& frozen = def.frozen_of(f);
    std::string text = names.filter(f);
    if (f.label) text += "\n'" + *f.label + "'";
    for (const auto& field : changed_fields(frozen.attrs, f.kind())) text += "\n" + field;
    if (auto* d = dynamic_cast<const DefaultPadding*>(frozen.padding.get());
        !d || frozen.padding != default_padding_for(f.kind(), frozen.attrs)) {
      auto l = frozen.padding->label();
      text += "\npadding: " + (l ? *l : describe_padding_method(frozen.padding->padding_method()));
    }
    if (f.convolution_source) {
      auto l = f.convolution_source->label();
      text += "\nweights" + (l ? ": '" + *l + "'" : std::string());
    }
    if (f.normalization_source) {
      auto l = f.normalization_source->label();
      text += "\nparameters" + (l ? ": '" + *l + "'" : std::string());
    }
    os << "  " << filter_id[&f] << " [shape=box, style=\"rounded,filled\", fillcolor=\""
       << (schema(f.kind()).is_gradient || schema(f.kind()).self_gradient ? "#fde2c8" : "#dbe8fb") << "\", label=\""
       << dot_escape(text) << "\"];\n";
    for (size_t k = 0; k < f.sources().size(); ++k) {
      const std::string from = image_node(f.sources()[k].get(), "");
      os << "  " << from << " -> " << filter_id[&f];
      if (f.sources().size() > 1) os << " [label=\"" << k << "\"]";
      os << ";\n";
    }
    for (const auto& st : f.source_states()) {
      if (!st) continue;
      const std::string from = state_node(st.get());
      os << "  " << from << " -> " << filter_id[&f] << " [style=dashed];\n";
    }
    auto self = std::const_pointer_cast<FilterNode>(f.shared_from_this());
    const std::string to = image_node(self->result_image().get(), "");
    os << "  " << filter_id[&f] << " -> " << to << ";\n";
  }
  // Produced states that some filter of the graph consumes, or that the graph exports.
  for (const auto& fp : def.filters) {
    for (const auto& st : fp->result_states()) {
      bool used = st->export_from_graph;
      for (const auto& g : def.filters)
        for (const auto& s : g->source_states()) used |= s.get() == st.get();
      if (!used) continue;
      const std::string id = state_node(st.get());
      os << "  " << filter_id[fp.get()] << " -> " << id << " [style=dashed];\n";
    }
  }
  for (size_t r = 0; r < def.results.size(); ++r) {
    const std::string id = image_node(def.results[r].get(), "");
    os << "  result" << r << " [shape=plaintext, label=\"result " << r << (def.results_needed[r] ? "" : " (not needed)")
       << "\"];\n  " << id << " -> result" << r << " [style=dotted];\n";
  }
  os << "}\n";
  return os.str();
}

std::string plan_to_dot(const Plan& plan, const std::string& title) {
  std::ostringstream os;
  os << "digraph MPSNNGraphPlan {\n  graph [rankdir=TB, fontname=\"Helvetica\", label=\""
     << dot_escape(detail::concat(title, "\nplan: ", plan.steps_.size(), " steps, temporary memory ", plan.arena_bytes_,
                                  " bytes"))
     << "\"];\n  node [fontname=\"Helvetica\", fontsize=10];\n";
  // Arena values that share an offset reuse one block of memory: same colour, and a dashed edge
  // from the value that had it before.
  static const char* palette[] = {"#fbe3d6", "#d9f2d9", "#dbe8fb", "#f6f0c4", "#eadcf5", "#d5f0f2", "#f5d5e5", "#e6e6e6"};
  std::unordered_map<size_t, int> offset_colour;
  std::unordered_map<size_t, int> last_at_offset;
  std::vector<bool> used(plan.values_.size(), false);
  for (int v : plan.step_values_) used[size_t(v)] = true;
  auto value_name = [](int v) { return "v" + std::to_string(v); };
  for (size_t v = 0; v < plan.values_.size(); ++v) {
    if (!used[v]) continue;
    const ValueSlot& s = plan.values_[v];
    std::string text = detail::concat("%", v, " ", shape_text(s.desc.shape));
    if (s.desc.dtype != DType::f32) text += std::string(" ") + dtype_name(s.desc.dtype);
    std::string colour = "white";
    if (s.kind == ValueSlot::Kind::input) text += detail::concat("\ninput ", s.index);
    else if (s.kind == ValueSlot::Kind::output) text += detail::concat("\noutput ", s.index);
    else {
      text += detail::concat("\narena @", s.offset, ", ", s.desc.bytes(), " bytes");
      auto [it, fresh] = offset_colour.emplace(s.offset, int(offset_colour.size()));
      colour = palette[size_t(it->second) % (sizeof(palette) / sizeof(*palette))];
    }
    os << "  " << value_name(int(v)) << " [shape=ellipse, style=filled, fillcolor=\"" << colour << "\", label=\""
       << dot_escape(text) << "\"];\n";
  }
  for (size_t i = 0; i < plan.steps_.size(); ++i) {
    const PlanStep& st = plan.steps_[i];
    std::string text = detail::concat("step ", i, "\n", st.context);
    if (!st.fused.empty()) text += "\nfused: " + st.fused;
    os << "  step" << i << " [shape=box, style=\"rounded,filled\", fillcolor=\"#dbe8fb\", label=\"" << dot_escape(text)
       << "\"];\n";
    for (int k = 0; k < st.num_inputs; ++k)
      os << "  " << value_name(plan.step_values_[size_t(st.first_input + k)]) << " -> step" << i << ";\n";
    for (int k = 0; k < st.num_outputs; ++k) {
      const int v = plan.step_values_[size_t(st.first_output + k)];
      os << "  step" << i << " -> " << value_name(v) << ";\n";
      const ValueSlot& s = plan.values_[size_t(v)];
      if (s.kind != ValueSlot::Kind::arena) continue;
      if (auto it = last_at_offset.find(s.offset); it != last_at_offset.end() && it->second != v)
        os << "  " << value_name(it->second) << " -> " << value_name(v)
           << " [style=dashed, color=\"#888888\", label=\"reuses memory\", constraint=false];\n";
      last_at_offset[s.offset] = v;
    }
  }
  os << "}\n";
  return os.str();
}

}  // namespace mpsnn
