// Convolution family on cuDNN, through the cuDNN frontend's graph API: one cuDNN graph per
// compiled plan step, conv_fprop -> + bias -> the fused post-ops (ReLU family, residual add) in
// order, NHWC with the plan's pixel strides (a channel slot of a concatenation and a custom
// policy's source channel window are strides and a pointer offset, not copies). Activations are
// the plan's: float16 (a float16 graph, CUDA's default), bfloat16 or float32, with float32 accumulation
// either way. Plans are built once, when the mpsnn plan is compiled: cuDNN's heuristics (mode A)
// rank the engines, the first MPSNN_CUDNN_CANDIDATES (default 4) that build are timed on the
// device, and the fastest is kept; its workspace is the step's scratch memory. MPSNN_CUDNN_LOG=1
// prints each candidate's engine and time and the choice to stderr.
//
// Numerics: float16 and bfloat16 activations may use Tensor Core engines (products of 16-bit
// values are exact in float32) but never a 16-bit accumulation (REDUCED_PRECISION_REDUCTION);
// float32 activations use no Tensor Core engine, so no TF32 rounding of the inputs, unless
// MPSNN_CUDA_TF32=1 when the plan is compiled asks for TF32 (as PyTorch's default
// torch.backends.cudnn.allow_tf32 does): then float32 convolutions may take TF32 Tensor Core
// engines, which round both operands to 10 mantissa bits and accumulate in float32 (an
// experiment: in ResNets its results are far less accurate than PyTorch's TF32, see
// benchmarks/README.md). 16-bit and TF32 convolutions take no Winograd or FFT engine
// (MPSNN_CUDNN_WINOGRAD=1 allows them for 16-bit ones), whose transforms round differently from
// the direct engines': a precaution (it cost no speed on ResNet-18/50), not a measured fix.
//
// Regular, grouped, depthwise, dilated and strided convolutions and fully connected layers (a
// convolution whose kernel covers the source) run here. Negative MPS pads become a cropped source
// (library_axis), as on the CPU. Not yet on CUDA (UnsupportedError naming the node): transposed
// and sub-pixel convolutions and the clamp edge mode.
//
// Weights are OHWI, which is cuDNN's KRSC: they are copied to device memory in the activation
// dtype (float16 weights round to nearest even), when the plan is made and again when a run
// brings a newer parameter version.
//
// Channel padding: 16-bit Tensor Core engines need channel counts that are multiples of 8. A
// float16 or bfloat16 convolution (not grouped) of another source channel count (ResNet's first convolution
// reads 3 channels) copies its source window into scratch memory with the channels padded to a
// multiple of 8 with zeros (our pad kernel, one pass), and its weights get zero channels to match:
// the same sums, computed on Tensor Cores. MPSNN_CUDA_PAD_CHANNELS=0 turns this off;
// MPSNN_CUDA_PAD_CHANNELS=4 pads sources of fewer than 4 channels to 4 instead (an experiment:
// cuDNN has first-layer kernels for 4 channels).
#include <cudnn_frontend.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <mutex>
#include <unordered_map>

#include "backends/cuda/device.h"
#include "backends/cuda/kernels/launch.h"
#include "backends/cuda/libraries.h"
#include "backends/cuda/register.h"
#include "backends/cuda/runtime.h"
#include "core/format.h"

namespace mpsnn::cuda {

namespace fe = cudnn_frontend;
using TensorPtr = std::shared_ptr<fe::graph::Tensor_attributes>;

namespace {

// cuDNN fuses ReLU (with a leaky slope) as a pointwise RELU_FWD. Not ReLUN: with a slope, its
// upper clip was not applied on the H200 (cuDNN 9.19), so it runs in our elementwise kernel.
bool fusable(const NeuronDescriptor& n) { return n.type == NeuronType::relu; }

enum Uid : int64_t { kX = 1, kW, kB, kY, kZ };

bool env_on(const char* name) {
  const char* v = std::getenv(name);
  return v && std::string(v) == "1";
}

float bits_to_float(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

std::vector<int64_t> nhwc_strides(const ImageShape& s, int64_t pixel_stride) {
  return {s.h * s.w * pixel_stride, 1, s.w * pixel_stride, pixel_stride};
}

void check(fe::error_t e, const std::string& context, const char* what) {
  MPSNN_CHECK(e.is_good(), BackendError, context, " cuDNN ", what, " failed: ", e.get_message());
}

// How many of the heuristics' engines are built and timed per convolution (MPSNN_CUDNN_CANDIDATES,
// default 4; 1 keeps the heuristics' first choice without timing).
// The channel count a float16 source of `cin` channels is padded to (cin: none).
int64_t padded_channels(int64_t cin) {
  static const int granule = [] {
    const char* v = std::getenv("MPSNN_CUDA_PAD_CHANNELS");
    return v && std::string(v) == "0" ? 0 : v && std::string(v) == "4" ? 4 : 8;
  }();
  if (granule == 0) return cin;
  if (granule == 4 && cin < 4) return 4;
  return (cin + 7) / 8 * 8;
}

constexpr size_t kAlign = 256;
size_t aligned(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

int candidate_count() {
  static const int n = [] {
    const char* v = std::getenv("MPSNN_CUDNN_CANDIDATES");
    const int k = v ? std::atoi(v) : 4;
    return k < 1 ? 1 : k;
  }();
  return n;
}

// A cudaEvent_t pair that times work on one stream.
struct EventTimer {
  cudaEvent_t start = nullptr, stop = nullptr;
  EventTimer() {
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
  }
  ~EventTimer() {
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
  }
};

class ConvolutionKernel final : public Kernel {
 public:
  ConvolutionKernel(const KernelSpec& spec, Device& device) : context_(spec.context), device_(device) {
    const ConvolutionParams& p = *spec.params.conv;
    const auto& d = p.desc;
    const auto variant = spec.attrs_as<ConvolutionAttrs>().variant;
    MPSNN_CHECK(variant != ConvolutionVariant::transpose, UnsupportedError, context_,
                " transposed convolutions do not run on the CUDA backend yet; use the CPU device");
    MPSNN_CHECK(d.sub_pixel_scale_factor == 1, UnsupportedError, context_,
                " sub-pixel convolutions do not run on the CUDA backend yet; use the CPU device");
    MPSNN_CHECK(spec.geom.edge_mode != EdgeMode::clamp, UnsupportedError, context_,
                " the clamp edge mode does not run on the CUDA backend yet; use the CPU device");
    ensure_cudnn();

    const ImageShape& src = spec.input(0);
    const ImageShape& out = spec.output();
    dtype_ = spec.outputs[0].dtype;
    MPSNN_CHECK(dtype_ == DType::f32 || dtype_ == DType::f16 || dtype_ == DType::bf16, DTypeError, context_,
                " CUDA convolutions take float32, float16 or bfloat16 activations, got ", dtype_name(dtype_));
    tf32_ = dtype_ == DType::f32 && env_on("MPSNN_CUDA_TF32");
    esize_ = int64_t(dtype_size(dtype_));
    const bool fc = variant == ConvolutionVariant::fully_connected;
    const int64_t cin = d.input_feature_channels, cout = d.output_feature_channels;
    const int64_t groups = d.depthwise ? cin : d.groups;
    kh_ = fc ? src.h : d.kernel_height;
    kw_ = fc ? src.w : d.kernel_width;
    cin_per_group_ = d.depthwise ? 1 : cin / groups;
    cout_ = cout;
    cin_ = cin;

    // Geometry: the window's pads as cuDNN takes them, a crop of the source for negative pads.
    LibraryAxis ay, ax;
    if (fc) {
      ay = LibraryAxis{0, src.h, 0, 0};
      ax = LibraryAxis{0, src.w, 0, 0};
    } else {
      ay = library_axis(src.h, out.h, spec.geom.y);
      ax = library_axis(src.w, out.w, spec.geom.x);
    }
    src_offset_ = ay.crop_before * src.w * spec.inputs[0].shape.c + ax.crop_before * spec.inputs[0].shape.c;
    src_channel_offset_ = spec.geom.source_channel_offset;
    pad_src_ = {src.n, src.h, src.w, spec.inputs[0].shape.c};
    pad_y0_ = ay.crop_before, pad_x0_ = ax.crop_before;
    pad_h_ = ay.source, pad_w_ = ax.source;

    // Post-ops in order: cuDNN takes a prefix of sums and ReLU-family neurons, our elementwise
    // kernels the rest (the fusion pass never puts a sum behind an unfusable neuron). A clamp that
    // changes no float16 result is left out (a residual addition's default clamp to +-FLT_MAX,
    // which otherwise would keep the ReLU behind it out of cuDNN's graph: two passes more).
    for (size_t i = 0; i < spec.post_ops.size(); ++i) {
      const PostOp& op = spec.post_ops[i];
      if (clamp_is_noop(spec.post_ops, i)) continue;
      const bool in_graph = tail_.empty() && (op.kind == PostOp::Kind::sum ||
                                              (op.kind == PostOp::Kind::neuron && fusable(op.neuron)));
      if (in_graph) {
        fused_.push_back(op);
        has_sum_ = has_sum_ || op.kind == PostOp::Kind::sum;
        continue;
      }
      MPSNN_CHECK(op.kind != PostOp::Kind::sum, BackendError, context_,
                  " internal error: a residual sum follows a post-op cuDNN cannot fuse");
      tail_.push_back(prepare_post_op(op, device));
    }
    num_inputs_ = int(spec.inputs.size());

    Geometry g{src, out, xs_of(src, ay, ax, cin), spec.inputs[0].shape.c, spec.outputs[0].shape.c,
               has_sum_ ? spec.inputs.back().shape.c : 0, ay, ax, fc ? 1 : d.stride_y, fc ? 1 : d.stride_x,
               fc ? 1 : d.dilation_y, fc ? 1 : d.dilation_x};
    CudaDevice& cuda = dynamic_cast<CudaDevice&>(device);
    {
      std::lock_guard<std::mutex> lock(cuda.build_mutex());
      // One cuDNN graph with the bias and the fused post-ops when an engine of the numerics above
      // takes it; else the convolution alone and our epilogue kernel (bias, residual, ReLU). With
      // padded channels first, where they apply; without when no engine takes them.
      const bool pad = dtype_ != DType::f32 && groups == 1 && !d.depthwise && padded_channels(cin) != cin;
      std::string why, again;
      for (int attempt = pad ? 0 : 1; attempt < 2; ++attempt) {
        cpad_ = attempt == 0 ? padded_channels(cin) : 0;
        graph_ = make_graph(g, true);
        why = build_plans(*graph_, cuda.build_handle());
        epilogue_ = false;
        if (why.empty()) break;
        graph_ = make_graph(g, false);
        again = build_plans(*graph_, cuda.build_handle());
        epilogue_ = true;
        if (again.empty()) break;
      }
      MPSNN_CHECK(!epilogue_ || again.empty(), BackendError, context_, " cuDNN has no ", dtype_name(dtype_),
                  " engine for this convolution: ", again);
      if (epilogue_) {
        MPSNN_CHECK(fused_.size() <= size_t(Epilogue::kMaxOps), BackendError, context_, " internal error: ",
                    fused_.size(), " fused post-ops");
        for (const auto& op : fused_) {
          const int k = epilogue_ops_.count++;
          epilogue_ops_.is_sum[k] = op.kind == PostOp::Kind::sum;
          if (!epilogue_ops_.is_sum[k]) epilogue_ops_.neuron[k] = prepare_neuron(op.neuron, device).neuron;
        }
      }
    }
    weights_ = device.allocator().allocate(size_t(cout * kh_ * kw_ * weight_channels()) * size_t(esize_), false);
    bias_ = device.allocator().allocate(size_t(cout) * sizeof(float), false);
    if (dtype_ != DType::f32) bias_io_ = device.allocator().allocate(size_t(cout) * size_t(esize_), false);
    load_parameters(p);
    version_.set(spec.params_version);
    {
      std::lock_guard<std::mutex> lock(cuda.build_mutex());
      choose_plan(spec, cuda);
    }
  }

  // cuDNN's workspace, then (channel padding) the padded source.
  size_t scratch_bytes() const override { return cpad_ ? aligned(workspace_) + padded_bytes() : workspace_; }
  // The output may take over the residual addend's memory (cuDNN reads each element of Z before
  // it writes the same element of Y).
  // Not with our epilogue, which reads the addend after cuDNN wrote the result.
  int in_place_input() const override { return has_sum_ && !epilogue_ ? num_inputs_ - 1 : -1; }

  void run(const KernelArgs& a, KernelState*) const override {
    const ParamSnapshot& p = a.params[0];
    version_.ensure(p.version, [&] { load_parameters(*p.values.conv); });
    CudaStream& stream = stream_of(a.stream);
    void* padded = cpad_ ? static_cast<char*>(a.scratch) + aligned(workspace_) : nullptr;
    if (cpad_)
      launch_pad_channels(a.inputs[0].data, pad_src_.n, pad_src_.h, pad_src_.w, pad_src_.c, pad_y0_, pad_x0_,
                          src_channel_offset_, cin_, padded, pad_h_, pad_w_, cpad_, stream.stream(), context_);
    auto pack = variant_pack(cpad_ ? padded : a.inputs[0].data, a.outputs[0].data,
                             has_sum_ && !epilogue_ ? a.inputs[a.num_inputs - 1].data : nullptr);
    {
      // The frontend's execute() keeps per-call state in the graph object: one caller at a time
      // (this only serializes enqueueing; the GPU work of different streams still overlaps).
      std::lock_guard<std::mutex> lock(execute_mutex_);
      check(graph_->execute_plan_at_index(stream.cudnn(), pack, a.scratch, plan_index_), context_, "execute");
    }
    if (epilogue_) {
      // Bias, then the post-ops cuDNN would have fused, in order, in one pass over the result.
      const TensorRef* addend = has_sum_ ? &a.inputs[a.num_inputs - 1] : nullptr;
      launch_epilogue(static_cast<const float*>(bias_->data()), epilogue_ops_, addend, a.outputs[0], stream.stream(),
                      context_);
    }
    for (const auto& op : tail_) apply_post_op(op, a.outputs[0], stream.stream(), context_);
  }

 private:
  struct Geometry {
    ImageShape src, out, xs;     // source, result, the source window cuDNN reads
    int64_t sps, ops, zps;       // pixel strides of source, result, residual addend
    LibraryAxis ay, ax;
    int64_t sy, sx, dy, dx;
  };
  static ImageShape xs_of(const ImageShape& src, const LibraryAxis& ay, const LibraryAxis& ax, int64_t cin) {
    return ImageShape{src.n, ay.source, ax.source, cin};
  }

  // x: the source value, or the padded source (channel padding), which starts at the window.
  std::unordered_map<int64_t, void*> variant_pack(void* x, void* y, void* z) const {
    const int64_t offset = cpad_ ? 0 : (src_offset_ + src_channel_offset_) * esize_;
    std::unordered_map<int64_t, void*> pack{{kX, static_cast<char*>(x) + offset}, {kW, weights_->data()}, {kY, y}};
    if (!epilogue_) pack[kB] = bias_io_ ? bias_io_->data() : bias_->data();
    if (z) pack[kZ] = z;
    return pack;
  }

  // Builds up to candidate_count() of the heuristics' plans and keeps the fastest on this
  // device (each timed as the best of a few runs on scratch tensors of the step's shapes).
  void choose_plan(const KernelSpec& spec, CudaDevice& cuda) {
    const std::vector<int64_t>& built = candidates_;
    auto workspace_of = [&](int64_t i) {
      int64_t ws = 0;
      check(graph_->get_workspace_size_plan_at_index(i, ws), context_, "workspace query");
      return size_t(ws);
    };
    plan_index_ = built[0];
    if (built.size() > 1) {
      size_t ws = 0;
      for (int64_t i : built) ws = std::max(ws, workspace_of(i));
      auto bytes = [&](const TensorDesc& d) { return size_t(d.shape.numel()) * dtype_size(d.dtype); };
      Allocator& alloc = cuda.allocator();
      auto x = alloc.allocate(cpad_ ? padded_bytes() : bytes(spec.inputs[0]), true);
      auto y = alloc.allocate(bytes(spec.outputs[0]), true);
      auto z = has_sum_ && !epilogue_ ? alloc.allocate(bytes(spec.inputs.back()), true) : nullptr;
      auto w = ws ? alloc.allocate(ws, false) : nullptr;
      auto pack = variant_pack(x->data(), y->data(), z ? z->data() : nullptr);
      cudnnHandle_t h = cuda.build_handle();
      cudaStream_t stream = nullptr;
      MPSNN_CHECK(fe::detail::get_stream(h, &stream) == CUDNN_STATUS_SUCCESS, BackendError, context_,
                  " cuDNN could not report its handle's stream");
      EventTimer t;
      float best = 0;
      for (int64_t i : built) {
        void* scratch = w ? w->data() : nullptr;
        if (!graph_->execute_plan_at_index(h, pack, scratch, i).is_good()) continue;  // warm-up
        float fastest = -1;
        for (int r = 0; r < 3; ++r) {
          cudaEventRecord(t.start, stream);
          const bool ok = graph_->execute_plan_at_index(h, pack, scratch, i).is_good();
          cudaEventRecord(t.stop, stream);
          MPSNN_CUDA_CHECK(cudaEventSynchronize(t.stop), context_, " timing cuDNN plans");
          float ms = 0;
          if (ok && cudaEventElapsedTime(&ms, t.start, t.stop) == cudaSuccess && (fastest < 0 || ms < fastest))
            fastest = ms;
        }
        if (fastest >= 0 && (best == 0 || fastest < best)) best = fastest, plan_index_ = i;
        if (env_on("MPSNN_CUDNN_LOG")) {
          std::string name = "(unnamed)";
          if (!graph_->get_plan_name_at_index(i, name).is_good()) name = "(unnamed)";
          std::fprintf(stderr, "[mpsnn cuda] %s candidate %lld %s: %.4f ms\n", context_.c_str(), (long long)i,
                       name.c_str(), double(fastest));
        }
      }
    }
    workspace_ = workspace_of(plan_index_);
    if (env_on("MPSNN_CUDNN_LOG")) {  // which engine each convolution runs (numerics differ between engines)
      std::string name = "(unnamed)";
      if (!graph_->get_plan_name_at_index(plan_index_, name).is_good()) name = "(unnamed)";
      std::fprintf(stderr, "[mpsnn cuda] %s runs plan %lld %s (of %zu built), workspace %zu bytes\n", context_.c_str(),
                   (long long)plan_index_, name.c_str(), candidates_.size(), workspace_);
    }
  }

  // The cuDNN graph: conv_fprop, then (with_epilogue) + bias and the fused post-ops in order.
  // The source as cuDNN sees it is cropped to the window and holds channels [offset, offset + cin)
  // of pixels `sps` apart (a custom policy's channel window: strides, not a copy).
  std::shared_ptr<fe::graph::Graph> make_graph(const Geometry& g, bool with_epilogue) const {
    auto graph = std::make_shared<fe::graph::Graph>();
    const fe::DataType_t io = dtype_ == DType::f16    ? fe::DataType_t::HALF
                              : dtype_ == DType::bf16 ? fe::DataType_t::BFLOAT16
                                                      : fe::DataType_t::FLOAT;
    graph->set_io_data_type(io)
        .set_intermediate_data_type(fe::DataType_t::FLOAT)
        .set_compute_data_type(fe::DataType_t::FLOAT);
    const ImageShape& xs = g.xs;
    const ImageShape& src = g.src;
    const ImageShape& os = g.out;
    // The padded source is dense: the window's pixels, cpad_ channels each.
    const int64_t cx = cpad_ ? cpad_ : xs.c;
    const std::vector<int64_t> x_stride = cpad_ ? std::vector<int64_t>{xs.h * xs.w * cpad_, 1, xs.w * cpad_, cpad_}
                                                : std::vector<int64_t>{src.h * src.w * g.sps, 1, src.w * g.sps, g.sps};
    auto X = graph->tensor(
        fe::graph::Tensor_attributes().set_name("X").set_uid(kX).set_dim({xs.n, cx, xs.h, xs.w}).set_stride(x_stride));
    const int64_t cw = weight_channels();
    auto W = graph->tensor(fe::graph::Tensor_attributes()
                               .set_name("W")
                               .set_uid(kW)
                               .set_dim({cout_, cw, kh_, kw_})
                               .set_stride({kh_ * kw_ * cw, 1, kw_ * cw, cw}));
    auto conv = fe::graph::Conv_fprop_attributes()
                    .set_name("conv")
                    .set_pre_padding({g.ay.pad_l, g.ax.pad_l})
                    .set_post_padding({g.ay.pad_r, g.ax.pad_r})
                    .set_stride({g.sy, g.sx})
                    .set_dilation({g.dy, g.dx});
    TensorPtr Y = graph->conv_fprop(X, W, conv);
    Y->set_data_type(with_epilogue ? fe::DataType_t::FLOAT : io);
    if (with_epilogue) {
      auto B = graph->tensor(fe::graph::Tensor_attributes()
                                 .set_name("B")
                                 .set_uid(kB)
                                 .set_dim({1, cout_, 1, 1})
                                 .set_stride({cout_, 1, cout_, cout_}));
      Y = graph->pointwise(Y, B, fe::graph::Pointwise_attributes().set_mode(fe::PointwiseMode_t::ADD));
      for (const auto& op : fused_) {
        if (op.kind == PostOp::Kind::sum) {
          auto Z = graph->tensor(fe::graph::Tensor_attributes()
                                     .set_name("Z")
                                     .set_uid(kZ)
                                     .set_dim({os.n, os.c, os.h, os.w})
                                     .set_stride(nhwc_strides(os, g.zps)));
          Y = graph->pointwise(Y, Z, fe::graph::Pointwise_attributes().set_mode(fe::PointwiseMode_t::ADD));
        } else {
          auto relu = fe::graph::Pointwise_attributes().set_mode(fe::PointwiseMode_t::RELU_FWD);
          if (op.neuron.a != 0.0f) relu.set_relu_lower_clip_slope(op.neuron.a);
          if (op.neuron.type == NeuronType::relu_n) relu.set_relu_upper_clip(op.neuron.b);
          Y = graph->pointwise(Y, relu);
        }
      }
    }
    Y->set_output(true).set_uid(kY).set_dim({os.n, os.c, os.h, os.w}).set_stride(nhwc_strides(os, g.ops));
    Y->set_data_type(io);
    return graph;
  }

  // Heuristics (mode A) and their candidates' support check; the plans are built by
  // choose_plan. Float32 activations: no Tensor Core, down-converting or reduced-precision
  // engines (no TF32); float16: no down-converting or reduced-precision (float16-accumulating)
  // engines. Returns why it failed, or "".
  std::string build_plans(fe::graph::Graph& graph, cudnnHandle_t h) {
    auto step = [](fe::error_t e, const char* what) -> std::string {
      return e.is_good() ? std::string() : std::string(what) + ": " + e.get_message();
    };
    std::string why = step(graph.validate(), "validation");
    if (why.empty()) why = step(graph.build_operation_graph(h), "operation graph");
    if (why.empty()) why = step(graph.create_execution_plans({fe::HeurMode_t::A, fe::HeurMode_t::FALLBACK}), "heuristics");
    if (!why.empty()) return why;
    if (dtype_ == DType::f32 && !tf32_)
      graph.deselect_numeric_notes({fe::NumericalNote_t::TENSOR_CORE, fe::NumericalNote_t::DOWN_CONVERT_INPUTS,
                                    fe::NumericalNote_t::REDUCED_PRECISION_REDUCTION});
    else if (tf32_)  // Tensor Cores (TF32), but no engine that converts float32 inputs to 16 bits
      graph.deselect_numeric_notes(
          {fe::NumericalNote_t::DOWN_CONVERT_INPUTS, fe::NumericalNote_t::REDUCED_PRECISION_REDUCTION,
           fe::NumericalNote_t::FFT, fe::NumericalNote_t::WINOGRAD, fe::NumericalNote_t::WINOGRAD_TILE_4x4,
           fe::NumericalNote_t::WINOGRAD_TILE_6x6, fe::NumericalNote_t::WINOGRAD_TILE_13x13});
    else if (env_on("MPSNN_CUDNN_WINOGRAD"))
      graph.deselect_numeric_notes(
          {fe::NumericalNote_t::DOWN_CONVERT_INPUTS, fe::NumericalNote_t::REDUCED_PRECISION_REDUCTION});
    else  // 16-bit: no Winograd or FFT engines either (their transforms round in the 16-bit format)
      graph.deselect_numeric_notes(
          {fe::NumericalNote_t::DOWN_CONVERT_INPUTS, fe::NumericalNote_t::REDUCED_PRECISION_REDUCTION,
           fe::NumericalNote_t::FFT, fe::NumericalNote_t::WINOGRAD, fe::NumericalNote_t::WINOGRAD_TILE_4x4,
           fe::NumericalNote_t::WINOGRAD_TILE_6x6, fe::NumericalNote_t::WINOGRAD_TILE_13x13});
    why = step(graph.check_support(), "support check");
    if (!why.empty()) return why;
    candidates_.clear();
    const int64_t count = graph.get_execution_plan_count();
    for (int64_t i = 0; i < count && int(candidates_.size()) < candidate_count(); ++i) {
      fe::error_t e = graph.build_plan_at_index(i);
      if (e.is_good()) candidates_.push_back(i);
      else why = e.get_message();
    }
    return candidates_.empty() ? "plan build: none of " + std::to_string(count) + " candidates built: " + why : "";
  }

  // Whether post-op i, a clamp, changes nothing that is stored: 16-bit activations, bounds that
  // round to -inf/+inf in that format (so clamped values are stored as the unclamped ones would be),
  // and behind it only ReLUs without slope (relu(+-FLT_MAX) and relu(+-inf) store the same).
  bool clamp_is_noop(const std::vector<PostOp>& ops, size_t i) const {
    const PostOp& op = ops[i];
    if (op.kind != PostOp::Kind::clamp || dtype_ == DType::f32) return false;
    // The smallest float that float16 (65520) or bfloat16 (0x7f7f8000: halfway past its largest
    // finite value, ties to even round up) rounds to infinity.
    const float kRoundsToInf = dtype_ == DType::f16 ? 65520.0f : bits_to_float(0x7f7f8000u);
    if (!(op.lo <= -kRoundsToInf && op.hi >= kRoundsToInf)) return false;
    for (size_t k = i + 1; k < ops.size(); ++k)
      if (!(ops[k].kind == PostOp::Kind::neuron && ops[k].neuron.type == NeuronType::relu && ops[k].neuron.a == 0.0f))
        return false;
    return true;
  }

  // Input channels of the weights as cuDNN sees them (padded with zero channels to cpad_).
  int64_t weight_channels() const { return cpad_ ? cpad_ : cin_per_group_; }
  size_t padded_bytes() const { return size_t(pad_src_.n * pad_h_ * pad_w_ * cpad_) * size_t(esize_); }

  void load_parameters(const ConvolutionParams& p) const {
    std::vector<float> bias(size_t(cout_), 0.0f);
    if (!p.bias.empty()) std::copy(p.bias.begin(), p.bias.end(), bias.begin());
    device_.copy_blocking(bias_->data(), bias.data(), bias.size() * sizeof(float));
    if (dtype_ == DType::f32) {
      device_.copy_blocking(weights_->data(), p.weights.data(), p.weights.size() * sizeof(float));
      return;
    }
    const bool bf16 = dtype_ == DType::bf16;
    auto halves = [bf16](const float* v, size_t n) {
      std::vector<uint16_t> h(n);
      for (size_t i = 0; i < n; ++i) h[i] = bf16 ? float_to_bfloat16(v[i]) : float_to_half(v[i]);
      return h;
    };
    std::vector<uint16_t> w = halves(p.weights.data(), p.weights.size());
    if (cpad_) {
      // OHWI with cin_ channels -> cpad_ channels, the extra ones zero (float16 0 is all-zero bits).
      std::vector<uint16_t> padded(size_t(cout_ * kh_ * kw_ * cpad_), 0);
      for (int64_t t = 0; t < cout_ * kh_ * kw_; ++t)
        std::copy(w.begin() + t * cin_, w.begin() + (t + 1) * cin_, padded.begin() + t * cpad_);
      w.swap(padded);
    }
    device_.copy_blocking(weights_->data(), w.data(), w.size() * sizeof(uint16_t));
    const std::vector<uint16_t> b = halves(bias.data(), bias.size());
    device_.copy_blocking(bias_io_->data(), b.data(), b.size() * sizeof(uint16_t));
  }

  std::string context_;
  Device& device_;
  std::shared_ptr<fe::graph::Graph> graph_;
  mutable std::mutex execute_mutex_;
  std::shared_ptr<Storage> weights_, bias_, bias_io_;  // bias_io_: the bias in float16 / bfloat16 for cuDNN
  bool tf32_ = false;  // MPSNN_CUDA_TF32=1: float32 convolutions may round their inputs to TF32
  DType dtype_ = DType::f32;
  int64_t esize_ = 4;
  int64_t plan_index_ = 0;
  std::vector<int64_t> candidates_;  // built plans of graph_, in the heuristics' order
  VersionCache version_;
  std::vector<PostOp> fused_;
  std::vector<PreparedPostOp> tail_;
  size_t workspace_ = 0;
  int64_t kh_ = 1, kw_ = 1, cin_per_group_ = 1, cout_ = 1, cin_ = 1;
  int64_t cpad_ = 0;  // channel padding: the padded channel count, or 0
  ImageShape pad_src_;  // the source value as the pad kernel reads it (c: its pixel stride)
  int64_t pad_y0_ = 0, pad_x0_ = 0, pad_h_ = 0, pad_w_ = 0;
  int64_t src_offset_ = 0, src_channel_offset_ = 0;
  Epilogue epilogue_ops_;
  bool has_sum_ = false, epilogue_ = false;
  int num_inputs_ = 1;
};

}  // namespace

bool convolution_can_fuse_neuron(const NeuronDescriptor& n) { return fusable(n); }

std::unique_ptr<Kernel> make_convolution(const KernelSpec& spec, Device& device) {
  return std::make_unique<ConvolutionKernel>(spec, device);
}

}  // namespace mpsnn::cuda
