// Convolution family on cuDNN, through the cuDNN frontend's graph API: one cuDNN graph per
// compiled plan step, conv_fprop -> + bias -> the fused post-ops (ReLU family, residual add) in
// order, NHWC with the plan's pixel strides (a channel slot of a concatenation and a custom
// policy's source channel window are strides and a pointer offset, not copies). Plans are built
// once, when the mpsnn plan is compiled: cuDNN's heuristics (mode A) rank the engines and the
// first that builds is kept; its workspace is the step's scratch memory.
//
// Regular, grouped, depthwise, dilated and strided convolutions and fully connected layers (a
// convolution whose kernel covers the source) run here. Negative MPS pads become a cropped source
// (library_axis), as on the CPU. Not yet on CUDA (UnsupportedError naming the node): transposed
// and sub-pixel convolutions and the clamp edge mode.
//
// Weights are OHWI float32, which is cuDNN's KRSC: they are copied to device memory as they are,
// when the plan is made and again when a run brings a newer parameter version.
#include <cudnn_frontend.h>

#include <mutex>
#include <unordered_map>

#include "backends/cuda/device.h"
#include "backends/cuda/kernels/launch.h"
#include "backends/cuda/libraries.h"
#include "backends/cuda/register.h"
#include "backends/cuda/runtime.h"

namespace mpsnn::cuda {

namespace fe = cudnn_frontend;
using TensorPtr = std::shared_ptr<fe::graph::Tensor_attributes>;

namespace {

// cuDNN fuses ReLU (with a leaky slope) as a pointwise RELU_FWD. Not ReLUN: with a slope, its
// upper clip was not applied on the H200 (cuDNN 9.19), so it runs in our elementwise kernel.
bool fusable(const NeuronDescriptor& n) { return n.type == NeuronType::relu; }

enum Uid : int64_t { kX = 1, kW, kB, kY, kZ };

std::vector<int64_t> nhwc_strides(const ImageShape& s, int64_t pixel_stride) {
  return {s.h * s.w * pixel_stride, 1, s.w * pixel_stride, pixel_stride};
}

void check(fe::error_t e, const std::string& context, const char* what) {
  MPSNN_CHECK(e.is_good(), BackendError, context, " cuDNN ", what, " failed: ", e.get_message());
}

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
    const bool fc = variant == ConvolutionVariant::fully_connected;
    const int64_t cin = d.input_feature_channels, cout = d.output_feature_channels;
    const int64_t groups = d.depthwise ? cin : d.groups;
    kh_ = fc ? src.h : d.kernel_height;
    kw_ = fc ? src.w : d.kernel_width;
    cin_per_group_ = d.depthwise ? 1 : cin / groups;
    cout_ = cout;

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

    // Post-ops in order: cuDNN takes a prefix of sums and ReLU-family neurons, our elementwise
    // kernels the rest (the fusion pass never puts a sum behind an unfusable neuron).
    for (const auto& op : spec.post_ops) {
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
    std::string why;
    {
      std::lock_guard<std::mutex> lock(cuda.build_mutex());
      // One cuDNN graph with the bias and the fused post-ops when an engine takes it in float32
      // without TF32; else the convolution alone and our epilogue kernel (bias, residual, ReLU).
      graph_ = make_graph(g, true);
      why = build_plans(*graph_, cuda.build_handle());
      if (!why.empty()) {
        graph_ = make_graph(g, false);
        const std::string again = build_plans(*graph_, cuda.build_handle());
        MPSNN_CHECK(again.empty(), BackendError, context_, " cuDNN has no float32 engine for this convolution: ", again);
        epilogue_ = true;
        MPSNN_CHECK(fused_.size() <= size_t(Epilogue::kMaxOps), BackendError, context_, " internal error: ",
                    fused_.size(), " fused post-ops");
        for (const auto& op : fused_) {
          const int k = epilogue_ops_.count++;
          epilogue_ops_.is_sum[k] = op.kind == PostOp::Kind::sum;
          if (!epilogue_ops_.is_sum[k]) epilogue_ops_.neuron[k] = prepare_neuron(op.neuron, device).neuron;
        }
      }
    }
    int64_t ws = 0;
    check(graph_->get_workspace_size(ws), context_, "workspace query");
    workspace_ = size_t(ws);

    weights_ = device.allocator().allocate(size_t(cout * kh_ * kw_ * cin_per_group_) * sizeof(float), false);
    bias_ = device.allocator().allocate(size_t(cout) * sizeof(float), false);
    load_parameters(p);
    version_.set(spec.params_version);
  }

  size_t scratch_bytes() const override { return workspace_; }
  // The output may take over the residual addend's memory (cuDNN reads each element of Z before
  // it writes the same element of Y).
  // Not with our epilogue, which reads the addend after cuDNN wrote the result.
  int in_place_input() const override { return has_sum_ && !epilogue_ ? num_inputs_ - 1 : -1; }

  void run(const KernelArgs& a, KernelState*) const override {
    const ParamSnapshot& p = a.params[0];
    version_.ensure(p.version, [&] { load_parameters(*p.values.conv); });
    CudaStream& stream = stream_of(a.stream);
    std::unordered_map<int64_t, void*> pack{
        {kX, a.inputs[0].as<float>() + src_offset_ + src_channel_offset_},
        {kW, weights_->data()},
        {kY, a.outputs[0].data}};
    if (!epilogue_) pack[kB] = bias_->data();
    if (has_sum_ && !epilogue_) pack[kZ] = a.inputs[a.num_inputs - 1].data;
    {
      // The frontend's execute() keeps per-call state in the graph object: one caller at a time
      // (this only serializes enqueueing; the GPU work of different streams still overlaps).
      std::lock_guard<std::mutex> lock(execute_mutex_);
      check(graph_->execute(stream.cudnn(), pack, a.scratch), context_, "execute");
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

  // The cuDNN graph: conv_fprop, then (with_epilogue) + bias and the fused post-ops in order.
  // The source as cuDNN sees it is cropped to the window and holds channels [offset, offset + cin)
  // of pixels `sps` apart (a custom policy's channel window: strides, not a copy).
  std::shared_ptr<fe::graph::Graph> make_graph(const Geometry& g, bool with_epilogue) const {
    auto graph = std::make_shared<fe::graph::Graph>();
    graph->set_io_data_type(fe::DataType_t::FLOAT)
        .set_intermediate_data_type(fe::DataType_t::FLOAT)
        .set_compute_data_type(fe::DataType_t::FLOAT);
    const ImageShape& xs = g.xs;
    const ImageShape& src = g.src;
    const ImageShape& os = g.out;
    auto X = graph->tensor(fe::graph::Tensor_attributes()
                               .set_name("X")
                               .set_uid(kX)
                               .set_dim({xs.n, xs.c, xs.h, xs.w})
                               .set_stride({src.h * src.w * g.sps, 1, src.w * g.sps, g.sps}));
    auto W = graph->tensor(fe::graph::Tensor_attributes()
                               .set_name("W")
                               .set_uid(kW)
                               .set_dim({cout_, cin_per_group_, kh_, kw_})
                               .set_stride({kh_ * kw_ * cin_per_group_, 1, kw_ * cin_per_group_, cin_per_group_}));
    auto conv = fe::graph::Conv_fprop_attributes()
                    .set_name("conv")
                    .set_pre_padding({g.ay.pad_l, g.ax.pad_l})
                    .set_post_padding({g.ay.pad_r, g.ax.pad_r})
                    .set_stride({g.sy, g.sx})
                    .set_dilation({g.dy, g.dx});
    TensorPtr Y = graph->conv_fprop(X, W, conv);
    Y->set_data_type(fe::DataType_t::FLOAT);
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
    Y->set_data_type(fe::DataType_t::FLOAT);
    return graph;
  }

  // Heuristics (mode A), float32 engines only (no TF32: no tensor-core, down-converting or
  // reduced-precision engines), the first that builds. Returns why it failed, or "".
  static std::string build_plans(fe::graph::Graph& graph, cudnnHandle_t h) {
    auto step = [](fe::error_t e, const char* what) -> std::string {
      return e.is_good() ? std::string() : std::string(what) + ": " + e.get_message();
    };
    std::string why = step(graph.validate(), "validation");
    if (why.empty()) why = step(graph.build_operation_graph(h), "operation graph");
    if (why.empty()) why = step(graph.create_execution_plans({fe::HeurMode_t::A, fe::HeurMode_t::FALLBACK}), "heuristics");
    if (!why.empty()) return why;
    graph.deselect_numeric_notes({fe::NumericalNote_t::TENSOR_CORE, fe::NumericalNote_t::DOWN_CONVERT_INPUTS,
                                  fe::NumericalNote_t::REDUCED_PRECISION_REDUCTION});
    why = step(graph.check_support(), "support check");
    if (why.empty()) why = step(graph.build_plans(fe::BuildPlanPolicy_t::HEURISTICS_CHOICE), "plan build");
    return why;
  }

  void load_parameters(const ConvolutionParams& p) const {
    device_.copy_blocking(weights_->data(), p.weights.data(), p.weights.size() * sizeof(float));
    std::vector<float> bias(size_t(cout_), 0.0f);
    if (!p.bias.empty()) std::copy(p.bias.begin(), p.bias.end(), bias.begin());
    device_.copy_blocking(bias_->data(), bias.data(), bias.size() * sizeof(float));
  }

  std::string context_;
  Device& device_;
  std::shared_ptr<fe::graph::Graph> graph_;
  mutable std::mutex execute_mutex_;
  std::shared_ptr<Storage> weights_, bias_;
  VersionCache version_;
  std::vector<PostOp> fused_;
  std::vector<PreparedPostOp> tail_;
  size_t workspace_ = 0;
  int64_t kh_ = 1, kw_ = 1, cin_per_group_ = 1, cout_ = 1;
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
