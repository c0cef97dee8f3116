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

// cuDNN fuses ReLU with a leaky slope and an upper clip (relu_n) as a pointwise RELU_FWD.
bool fusable(const NeuronDescriptor& n) { return n.type == NeuronType::relu || n.type == NeuronType::relu_n; }

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

    graph_ = std::make_shared<fe::graph::Graph>();
    graph_->set_io_data_type(fe::DataType_t::FLOAT)
        .set_intermediate_data_type(fe::DataType_t::FLOAT)
        .set_compute_data_type(fe::DataType_t::FLOAT);
    const ImageShape xs{src.n, ay.source, ax.source, cin};
    // The source as cuDNN sees it: cropped, channels [offset, offset + cin) of pixels that are
    // `source pixel stride` apart. The plan's values are dense unless bound to a caller's image.
    const int64_t sps = spec.inputs[0].shape.c;
    auto X = graph_->tensor(fe::graph::Tensor_attributes()
                                .set_name("X")
                                .set_uid(kX)
                                .set_dim({xs.n, xs.c, xs.h, xs.w})
                                .set_stride({src.h * src.w * sps, 1, src.w * sps, sps}));
    auto W = graph_->tensor(fe::graph::Tensor_attributes()
                                .set_name("W")
                                .set_uid(kW)
                                .set_dim({cout, cin_per_group_, kh_, kw_})
                                .set_stride({kh_ * kw_ * cin_per_group_, 1, kw_ * cin_per_group_, cin_per_group_}));
    auto conv = fe::graph::Conv_fprop_attributes()
                    .set_name("conv")
                    .set_pre_padding({ay.pad_l, ax.pad_l})
                    .set_post_padding({ay.pad_r, ax.pad_r})
                    .set_stride({fc ? 1 : d.stride_y, fc ? 1 : d.stride_x})
                    .set_dilation({fc ? 1 : d.dilation_y, fc ? 1 : d.dilation_x});
    TensorPtr Y = graph_->conv_fprop(X, W, conv);
    Y->set_data_type(fe::DataType_t::FLOAT);
    auto B = graph_->tensor(fe::graph::Tensor_attributes()
                                .set_name("B")
                                .set_uid(kB)
                                .set_dim({1, cout, 1, 1})
                                .set_stride({cout, 1, cout, cout}));
    Y = graph_->pointwise(Y, B, fe::graph::Pointwise_attributes().set_mode(fe::PointwiseMode_t::ADD));
    const ImageShape& os = out;
    const int64_t ops = spec.outputs[0].shape.c;
    for (const auto& op : fused_) {
      if (op.kind == PostOp::Kind::sum) {
        const int64_t zps = spec.inputs.back().shape.c;
        auto Z = graph_->tensor(fe::graph::Tensor_attributes()
                                    .set_name("Z")
                                    .set_uid(kZ)
                                    .set_dim({os.n, os.c, os.h, os.w})
                                    .set_stride(nhwc_strides(os, zps)));
        Y = graph_->pointwise(Y, Z, fe::graph::Pointwise_attributes().set_mode(fe::PointwiseMode_t::ADD));
      } else {
        auto relu = fe::graph::Pointwise_attributes().set_mode(fe::PointwiseMode_t::RELU_FWD);
        if (op.neuron.a != 0.0f) relu.set_relu_lower_clip_slope(op.neuron.a);
        if (op.neuron.type == NeuronType::relu_n) relu.set_relu_upper_clip(op.neuron.b);
        Y = graph_->pointwise(Y, relu);
      }
    }
    Y->set_output(true).set_uid(kY).set_dim({os.n, os.c, os.h, os.w}).set_stride(nhwc_strides(os, ops));
    Y->set_data_type(fe::DataType_t::FLOAT);

    CudaDevice& cuda = dynamic_cast<CudaDevice&>(device);
    {
      std::lock_guard<std::mutex> lock(cuda.build_mutex());
      cudnnHandle_t h = cuda.build_handle();
      check(graph_->validate(), context_, "graph validation");
      check(graph_->build_operation_graph(h), context_, "operation graph");
      check(graph_->create_execution_plans({fe::HeurMode_t::A}), context_, "heuristics");
      check(graph_->check_support(), context_, "support check");
      check(graph_->build_plans(fe::BuildPlanPolicy_t::HEURISTICS_CHOICE), context_, "plan build");
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
  int in_place_input() const override { return has_sum_ ? num_inputs_ - 1 : -1; }

  void run(const KernelArgs& a, KernelState*) const override {
    const ParamSnapshot& p = a.params[0];
    version_.ensure(p.version, [&] { load_parameters(*p.values.conv); });
    CudaStream& stream = stream_of(a.stream);
    std::unordered_map<int64_t, void*> pack{
        {kX, a.inputs[0].as<float>() + src_offset_ + src_channel_offset_},
        {kW, weights_->data()},
        {kB, bias_->data()},
        {kY, a.outputs[0].data}};
    if (has_sum_) pack[kZ] = a.inputs[a.num_inputs - 1].data;
    {
      // The frontend's execute() keeps per-call state in the graph object: one caller at a time
      // (this only serializes enqueueing; the GPU work of different streams still overlaps).
      std::lock_guard<std::mutex> lock(execute_mutex_);
      check(graph_->execute(stream.cudnn(), pack, a.scratch), context_, "execute");
    }
    for (const auto& op : tail_) apply_post_op(op, a.outputs[0], stream.stream(), context_);
  }

 private:
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
  bool has_sum_ = false;
  int num_inputs_ = 1;
};

}  // namespace

bool convolution_can_fuse_neuron(const NeuronDescriptor& n) { return fusable(n); }

std::unique_ptr<Kernel> make_convolution(const KernelSpec& spec, Device& device) {
  return std::make_unique<ConvolutionKernel>(spec, device);
}

}  // namespace mpsnn::cuda
