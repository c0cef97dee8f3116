// The Metal backend: mpsnn's compiled graph (GraphDef) rebuilt from Apple's own MPSNN node classes
// and run by a real MPSNNGraph.
//
//  * Nodes: one MPS node per mpsnn filter node, made by the table kNodeMap below, one entry per
//    row of op_list.def. Each entry is a specialization of map_node<Kind>; the primary template is
//    deleted, so a kind added to op_list.def without its MPS counterpart does not compile (the
//    error names map_node<OpKind::TheKind>).
//  * Gradient nodes come from MPS itself: first from the forward loss node's
//    trainingGraphWithSourceGradient:nodeHandler: (MPS's own training-graph construction), matched
//    to mpsnn's gradient nodes through their incoming gradient and forward source; a gradient node
//    MPS did not make there (a hand-built one) from the forward node's gradientFiltersWithSources:.
//    Either way its class is checked against the one its map_node entry names before it is used.
//  * Attributes are set on the nodes; padding policies, data sources, handles, transform providers
//    and image allocators go through the small classes of objc_bridges.h, which answer from what
//    mpsnn resolved when it compiled the plan, so nothing calls back into Python during a run.
//  * A run: the caller's memory (shared MTLBuffers, device.mm) is copied into MPSImages with
//    MPSMatrixCopyToImage, the graph is encoded with encodeToCommandBuffer:sourceImages:
//    sourceStates:intermediateImages:destinationStates: (one image per source) or
//    encodeBatchToCommandBuffer:... (a batch) on the stream's MTLCommandBuffer, and the
//    results, exported images, exported states and loss images are copied back with
//    MPSImageCopyToMatrix and blits, all on the same command buffer: nothing waits on the CPU.
//  * Training: MPS hands each trainable gradient's state to its data source during the encode
//    (updateDeviceGPU); the bridge copies the parameter gradients into mpsnn's gradient state, and
//    mpsnn's own update protocol (NNGraph's training updates) then runs the data sources' updates,
//    whose optimizers encode MPSNNOptimizer kernels on the same command buffer (register.mm).
//
// Kinds MPS lacks on older macOS. The backend is built for macOS 11 and later (CMake's and
// check_metal.sh's deployment target), where every class used here exists. On macOS 10.13-10.14
// MPS has no GELU neuron (MPSCNNNeuronGeLUNode), no fully connected or transposed convolution
// gradient (MPSCNNFullyConnectedGradientNode, MPSCNNConvolutionTransposeGradientNode), no generic
// MPSCNNNeuronNode nodeWithSource:descriptor:, no MPSCNNLossLabels over images and no MPSMatrix at
// an offset. mpsnn's own C++ implements all of those kinds (the CPU backend's kernels in
// backends/cpu/kernels: own_elementwise, convolution_gradient, loss), so on such a Mac they would
// run on MTLDevice("cpu"); a build for it would need @available fallbacks here.
// Neither MPS (no MPSNNDivisionGradientNode in any macOS) nor mpsnn (graph/ops/arithmetic_gradient.cpp
// refuses to make one) has a division gradient; unsupported_nodes() still refuses one defensively.
// MPSNNInitialGradientNode, MPSNNForwardLossNode, MPSNNReshapeNode, MPSNNPadNode, the reductions and
// group normalization have no mpsnn kind and are not used.
#import <Foundation/Foundation.h>
#import <Metal/Metal.h>
#import <MetalPerformanceShaders/MetalPerformanceShaders.h>

#include "backends/metal/graph.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "backends/metal/device.h"
#include "backends/metal/objc_bridges.h"
#include "core/errors.h"
#include "graph/graph_def.h"
#include "graph/params.h"
#include "graph/plan.h"

namespace mpsnn::metal {

namespace {

// mpsnn's ChannelFormat raw values are MPSImageFeatureChannelFormat's (graph.md §0.2).
MPSImageFeatureChannelFormat mps_format(ChannelFormat f) { return MPSImageFeatureChannelFormat(int(f)); }

ChannelFormat format_of(DType t) {
  switch (t) {
    case DType::f16: return ChannelFormat::float16;
    case DType::u8: return ChannelFormat::unorm8;
    case DType::u16: return ChannelFormat::unorm16;
    default: return ChannelFormat::float32;
  }
}

// The MPSMatrix element type holding a value of `t` (MPSImageCopyToMatrix / MPSMatrixCopyToImage
// convert between it and the image's channel format); invalid where no matrix type exists.
MPSDataType matrix_type(DType t) {
  switch (t) {
    case DType::f32: return MPSDataTypeFloat32;
    case DType::f16: return MPSDataTypeFloat16;
    case DType::u8: return MPSDataTypeUnorm8;
    default: return MPSDataTypeInvalid;
  }
}

MPSCNNLossDescriptor* loss_descriptor(const LossDescriptor& d, ReductionType reduction) {
  MPSCNNLossDescriptor* l = [MPSCNNLossDescriptor cnnLossDescriptorWithType:MPSCNNLossType(int(d.type))
                                                              reductionType:MPSCNNReductionType(int(reduction))];
  l.weight = d.weight;
  l.labelSmoothing = d.label_smoothing;
  l.numberOfClasses = NSUInteger(d.number_of_classes);
  l.epsilon = d.epsilon;
  l.delta = d.delta;
  return l;
}

// The MPS node graph under construction.
struct Builder {
  const GraphKernelSpec& spec;
  id<MTLDevice> device;
  const ParamStore& params;
  std::unordered_map<const ImageNode*, MPSNNImageNode*> images;
  std::unordered_map<const StateNode*, MPSNNStateNode*> states;
  std::unordered_map<const FilterNode*, MPSNNFilterNode*> filters;
  // Every handle bridge by the node it stands for (the graph's handle lists map back through them).
  std::unordered_map<const void*, MpsnnHandle*> handles;
  std::unordered_map<const FilterNode*, const NodeGeometry*> geometry;
  std::unordered_map<const ImageNode*, ImageShape> shapes;
  // The data source bridges of forward nodes (their gradient sinks are set by the kernel).
  std::unordered_map<const FilterNode*, id> data_sources;
  // Gradient nodes MPS made in trainingGraphWithSourceGradient:nodeHandler:, per forward node.
  struct AutoGradient {
    MPSNNFilterNode* node;
    MPSNNImageNode* inference_source;
    MPSNNImageNode* gradient_source;
  };
  std::unordered_map<const void*, std::vector<AutoGradient>> auto_gradients;  // by (__bridge) forward node

  MpsnnHandle* handle_for(const void* node, const HandlePtr& h) {
    MpsnnHandle* __strong& b = handles[node];
    if (b == nil) b = [[MpsnnHandle alloc] initWithHandle:h];
    return b;
  }

  // The MPS image node of an mpsnn image node; graph inputs are made on first use.
  MPSNNImageNode* image(const ImageNodePtr& n) {
    auto it = images.find(n.get());
    if (it != images.end()) return it->second;
    MPSNN_CHECK(n->parent() == nullptr, GraphError, "[metal] an image node is used before the filter producing it");
    MPSNNImageNode* m = [MPSNNImageNode nodeWithHandle:handle_for(n.get(), n->handle)];
    configure(*n, m);
    images[n.get()] = m;
    return m;
  }

  void configure(const ImageNode& n, MPSNNImageNode* m) {
    m.format = mps_format(n.format);
    m.exportFromGraph = n.export_from_graph;
    m.synchronizeResource = n.synchronize_resource;
    m.stopGradient = n.stop_gradient;
    const bool temporary = n.image_allocator && n.image_allocator->is_temporary_default() && !n.export_from_graph;
    m.imageAllocator = [[MpsnnImageAllocator alloc] initTemporary:temporary];
  }

  // The MPS state node of an mpsnn state node: a result state of an already made MPS filter
  // (asked for only now, since asking is what makes MPS produce it), or a labels node.
  MPSNNStateNode* state(const StateNodePtr& s) {
    auto it = states.find(s.get());
    if (it != states.end()) return it->second;
    auto producer = s->producer();
    MPSNN_CHECK(producer != nullptr, GraphError, "[metal] a state node has neither a producer nor a loss reading it");
    MPSNNFilterNode* f = filters.at(producer.get());
    auto ours = producer->result_states();
    MPSNNStateNode* m = nil;
    if ([f isKindOfClass:[MPSCNNConvolutionNode class]]) {
      m = ((MPSCNNConvolutionNode*)f).convolutionGradientState;
    } else {
      NSArray<MPSNNStateNode*>* theirs = f.resultStates;
      for (size_t k = 0; k < ours.size(); ++k)
        if (ours[k] == s && k < theirs.count) m = theirs[k];
    }
    MPSNN_CHECK(m != nil, GraphError, producer->context(), " MPS gives this node no result state where mpsnn has one");
    m.handle = handle_for(s.get(), s->handle);
    m.exportFromGraph = s->export_from_graph;
    m.synchronizeResource = s->synchronize_resource;
    states[s.get()] = m;
    return m;
  }

  NodeParams params_of(const FilterNode& f) const { return params.values_of(f); }

  // Label, padding policy and result image settings of a new MPS node.
  MPSNNFilterNode* finish(const FilterNode& f, MPSNNFilterNode* m) {
    if (f.label) m.label = ns_string(f.label);
    const auto g = geometry.find(&f);
    const auto& frozen = spec.def->frozen_of(f);
    if (frozen.padding) {
      const ImageShape* out = nullptr;
      for (const auto& kv : shapes)
        if (kv.first->parent().get() == &f) out = &kv.second;
      m.paddingPolicy = [[MpsnnPadding alloc] initWithMethod:NSUInteger(frozen.padding->padding_method())
                                                       label:ns_string(frozen.padding->label())
                                                    geometry:(g != geometry.end() ? g->second : nullptr)
                                                      result:out];
    }
    return m;
  }

  template <typename T>
  const T& attrs(const FilterNode& f) const {
    return std::get<T>(spec.def->frozen_of(f).attrs);
  }
};

// ---------------------------------------------------------------------------------------------
// The table: one map_node specialization per op_list.def row.
template <OpKind K>
MPSNNFilterNode* map_node(Builder& b, const FilterNode& f) = delete;

// The MPS training style of a trainable node. mpsnn applies its own update protocol (GPU style
// during the encode, CPU style after completion: graph/training_updates.cpp) to the parameter
// gradients the bridges copy out of MPS during the encode, so MPS is asked for updateDeviceGPU
// (its data-source callback during the encode) whenever mpsnn trains the node at all.
MPSNNTrainingStyle mps_training_style(TrainingStyle s) {
  return s == TrainingStyle::update_device_none ? MPSNNTrainingStyleUpdateDeviceNone
                                                 : MPSNNTrainingStyleUpdateDeviceGPU;
}

// Forward kinds --------------------------------------------------------------------------------

template <>
MPSNNFilterNode* map_node<OpKind::Convolution>(Builder& b, const FilterNode& f) {
  const auto& a = b.attrs<ConvolutionAttrs>(f);
  MpsnnConvolutionDataSource* ds = [[MpsnnConvolutionDataSource alloc] initWithParams:b.params_of(f).conv
                                                                               binary:NO
                                                                                label:ns_string(f.label)];
  b.data_sources[&f] = ds;
  MPSNNImageNode* src = b.image(f.sources()[0]);
  MPSCNNConvolutionNode* n = nil;
  switch (a.variant) {
    case ConvolutionVariant::regular: n = [MPSCNNConvolutionNode nodeWithSource:src weights:ds]; break;
    case ConvolutionVariant::fully_connected: n = [MPSCNNFullyConnectedNode nodeWithSource:src weights:ds]; break;
    case ConvolutionVariant::transpose: {
      // The convolution it undoes sizes it (its gradient state), when the graph has one.
      MPSCNNConvolutionGradientStateNode* gs = nil;
      if (!f.source_states().empty()) gs = (MPSCNNConvolutionGradientStateNode*)b.state(f.source_states()[0]);
      n = [MPSCNNConvolutionTransposeNode nodeWithSource:src convolutionGradientState:gs weights:ds];
      break;
    }
  }
  n.accumulatorPrecision = MPSNNConvolutionAccumulatorPrecisionOption(a.accumulator_precision);
  n.trainingStyle = mps_training_style(a.training_style);
  return n;
}

template <>
MPSNNFilterNode* map_node<OpKind::BinaryConvolution>(Builder& b, const FilterNode& f) {
  const auto& a = b.attrs<BinaryConvolutionAttrs>(f);
  MpsnnConvolutionDataSource* ds = [[MpsnnConvolutionDataSource alloc] initWithParams:b.params_of(f).conv
                                                                               binary:YES
                                                                                label:ns_string(f.label)];
  b.data_sources[&f] = ds;
  MPSNNImageNode* src = b.image(f.sources()[0]);
  const auto type = MPSCNNBinaryConvolutionType(int(a.type));
  const auto flags = MPSCNNBinaryConvolutionFlags(a.flags);
  auto ptr = [](const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); };
  Class cls = a.fully_connected ? [MPSCNNBinaryFullyConnectedNode class] : [MPSCNNBinaryConvolutionNode class];
  MPSCNNBinaryConvolutionNode* n = nil;
  if (a.scale_value)
    n = [cls nodeWithSource:src weights:ds scaleValue:*a.scale_value type:type flags:flags];
  else
    n = [cls nodeWithSource:src
                    weights:ds
            outputBiasTerms:ptr(a.output_bias_terms)
           outputScaleTerms:ptr(a.output_scale_terms)
             inputBiasTerms:ptr(a.input_bias_terms)
            inputScaleTerms:ptr(a.input_scale_terms)
                       type:type
                      flags:flags];
  n.accumulatorPrecision = MPSNNConvolutionAccumulatorPrecisionOption(a.accumulator_precision);
  return n;
}

template <>
MPSNNFilterNode* map_node<OpKind::Pooling>(Builder& b, const FilterNode& f) {
  const auto& a = b.attrs<PoolingAttrs>(f);
  MPSNNImageNode* src = b.image(f.sources()[0]);
  const auto kw = NSUInteger(a.kernel_width), kh = NSUInteger(a.kernel_height);
  const auto sx = NSUInteger(a.stride_x), sy = NSUInteger(a.stride_y);
  switch (a.mode) {
    case PoolingMode::max:
      return [[MPSCNNPoolingMaxNode alloc] initWithSource:src kernelWidth:kw kernelHeight:kh strideInPixelsX:sx
                                          strideInPixelsY:sy];
    case PoolingMode::average:
      return [[MPSCNNPoolingAverageNode alloc] initWithSource:src kernelWidth:kw kernelHeight:kh strideInPixelsX:sx
                                              strideInPixelsY:sy];
    case PoolingMode::l2_norm:
      return [[MPSCNNPoolingL2NormNode alloc] initWithSource:src kernelWidth:kw kernelHeight:kh strideInPixelsX:sx
                                             strideInPixelsY:sy];
    case PoolingMode::dilated_max:
      return [[MPSCNNDilatedPoolingMaxNode alloc] initWithSource:src
                                                     kernelWidth:kw
                                                    kernelHeight:kh
                                                 strideInPixelsX:sx
                                                 strideInPixelsY:sy
                                                   dilationRateX:NSUInteger(a.dilation_x)
                                                   dilationRateY:NSUInteger(a.dilation_y)];
  }
  return nil;
}

// One MPS class per neuron type (each sets its own a, b, c as MPS defines them).
template <>
MPSNNFilterNode* map_node<OpKind::Neuron>(Builder& b, const FilterNode& f) {
  const NeuronDescriptor& n = b.attrs<NeuronAttrs>(f).neuron;
  MPSNNImageNode* s = b.image(f.sources()[0]);
  switch (n.type) {
    case NeuronType::none: return [MPSCNNNeuronNode nodeWithSource:s descriptor:neuron_descriptor(n)];
    case NeuronType::relu: return [MPSCNNNeuronReLUNode nodeWithSource:s a:n.a];
    case NeuronType::linear: return [MPSCNNNeuronLinearNode nodeWithSource:s a:n.a b:n.b];
    case NeuronType::sigmoid: return [MPSCNNNeuronSigmoidNode nodeWithSource:s];
    case NeuronType::hard_sigmoid: return [MPSCNNNeuronHardSigmoidNode nodeWithSource:s a:n.a b:n.b];
    case NeuronType::tanh: return [MPSCNNNeuronTanHNode nodeWithSource:s a:n.a b:n.b];
    case NeuronType::absolute: return [MPSCNNNeuronAbsoluteNode nodeWithSource:s];
    case NeuronType::soft_plus: return [MPSCNNNeuronSoftPlusNode nodeWithSource:s a:n.a b:n.b];
    case NeuronType::soft_sign: return [MPSCNNNeuronSoftSignNode nodeWithSource:s];
    case NeuronType::elu: return [MPSCNNNeuronELUNode nodeWithSource:s a:n.a];
    case NeuronType::prelu: {
      NSData* slopes = [NSData dataWithBytes:n.data.data() length:n.data.size() * sizeof(float)];
      return [MPSCNNNeuronPReLUNode nodeWithSource:s aData:slopes];
    }
    case NeuronType::relu_n: return [MPSCNNNeuronReLUNNode nodeWithSource:s a:n.a b:n.b];
    case NeuronType::power: return [MPSCNNNeuronPowerNode nodeWithSource:s a:n.a b:n.b c:n.c];
    case NeuronType::exponential: return [MPSCNNNeuronExponentialNode nodeWithSource:s a:n.a b:n.b c:n.c];
    case NeuronType::logarithm: return [MPSCNNNeuronLogarithmNode nodeWithSource:s a:n.a b:n.b c:n.c];
    case NeuronType::gelu: return [MPSCNNNeuronGeLUNode nodeWithSource:s];
  }
  return nil;
}

template <>
MPSNNFilterNode* map_node<OpKind::SoftMax>(Builder& b, const FilterNode& f) {
  MPSNNImageNode* s = b.image(f.sources()[0]);
  if (b.attrs<SoftMaxAttrs>(f).log) return [MPSCNNLogSoftMaxNode nodeWithSource:s];
  return [MPSCNNSoftMaxNode nodeWithSource:s];
}

template <>
MPSNNFilterNode* map_node<OpKind::Arithmetic>(Builder& b, const FilterNode& f) {
  const auto& a = b.attrs<ArithmeticAttrs>(f);
  MPSNNImageNode* l = b.image(f.sources()[0]);
  MPSNNImageNode* r = b.image(f.sources()[1]);
  MPSNNBinaryArithmeticNode* n = nil;
  switch (a.op) {
    case ArithmeticOp::add: n = [MPSNNAdditionNode nodeWithLeftSource:l rightSource:r]; break;
    case ArithmeticOp::subtract: n = [MPSNNSubtractionNode nodeWithLeftSource:l rightSource:r]; break;
    case ArithmeticOp::multiply: n = [MPSNNMultiplicationNode nodeWithLeftSource:l rightSource:r]; break;
    case ArithmeticOp::divide: n = [MPSNNDivisionNode nodeWithLeftSource:l rightSource:r]; break;
  }
  n.primaryScale = a.primary_scale;
  n.secondaryScale = a.secondary_scale;
  n.bias = a.bias;
  n.primaryStrideInFeatureChannels = NSUInteger(a.primary_strides[0]);
  n.primaryStrideInPixelsY = NSUInteger(a.primary_strides[1]);
  n.primaryStrideInPixelsX = NSUInteger(a.primary_strides[2]);
  n.secondaryStrideInFeatureChannels = NSUInteger(a.secondary_strides[0]);
  n.secondaryStrideInPixelsY = NSUInteger(a.secondary_strides[1]);
  n.secondaryStrideInPixelsX = NSUInteger(a.secondary_strides[2]);
  n.minimumValue = a.minimum_value;
  n.maximumValue = a.maximum_value;
  return n;
}

template <>
MPSNNFilterNode* map_node<OpKind::Concatenation>(Builder& b, const FilterNode& f) {
  NSMutableArray<MPSNNImageNode*>* sources = [NSMutableArray array];
  for (const auto& s : f.sources()) [sources addObject:b.image(s)];
  return [MPSNNConcatenationNode nodeWithSources:sources];
}

template <>
MPSNNFilterNode* map_node<OpKind::BatchNormalization>(Builder& b, const FilterNode& f) {
  const auto& a = b.attrs<BatchNormalizationAttrs>(f);
  MpsnnBatchNormalizationDataSource* ds =
      [[MpsnnBatchNormalizationDataSource alloc] initWithParams:b.params_of(f).norm label:ns_string(f.label)];
  b.data_sources[&f] = ds;
  MPSCNNBatchNormalizationNode* n = [MPSCNNBatchNormalizationNode nodeWithSource:b.image(f.sources()[0])
                                                                      dataSource:ds];
  n.flags = MPSCNNBatchNormalizationFlags(int(a.flags));
  n.trainingStyle = mps_training_style(a.training_style);
  return n;
}

template <>
MPSNNFilterNode* map_node<OpKind::InstanceNormalization>(Builder& b, const FilterNode& f) {
  const auto& a = b.attrs<InstanceNormalizationAttrs>(f);
  MpsnnInstanceNormalizationDataSource* ds =
      [[MpsnnInstanceNormalizationDataSource alloc] initWithParams:b.params_of(f).norm label:ns_string(f.label)];
  b.data_sources[&f] = ds;
  MPSCNNInstanceNormalizationNode* n = [MPSCNNInstanceNormalizationNode nodeWithSource:b.image(f.sources()[0])
                                                                            dataSource:ds];
  n.trainingStyle = mps_training_style(a.training_style);
  return n;
}

template <>
MPSNNFilterNode* map_node<OpKind::Normalization>(Builder& b, const FilterNode& f) {
  const auto& a = b.attrs<NormalizationAttrs>(f);
  MPSNNImageNode* s = b.image(f.sources()[0]);
  MPSCNNNormalizationNode* n = nil;
  switch (a.mode) {
    case NormalizationMode::cross_channel:
      n = [MPSCNNCrossChannelNormalizationNode nodeWithSource:s kernelSize:NSUInteger(a.kernel_width)];
      break;
    case NormalizationMode::spatial: {
      MPSCNNSpatialNormalizationNode* sp = [MPSCNNSpatialNormalizationNode nodeWithSource:s
                                                                               kernelSize:NSUInteger(a.kernel_width)];
      sp.kernelHeight = NSUInteger(a.kernel_height);
      n = sp;
      break;
    }
    case NormalizationMode::local_contrast: {
      MPSCNNLocalContrastNormalizationNode* lc =
          [MPSCNNLocalContrastNormalizationNode nodeWithSource:s kernelSize:NSUInteger(a.kernel_width)];
      lc.kernelHeight = NSUInteger(a.kernel_height);
      lc.pm = a.pm;
      lc.ps = a.ps;
      lc.p0 = a.p0;
      n = lc;
      break;
    }
  }
  n.alpha = a.alpha;
  n.beta = a.beta;
  n.delta = a.delta;
  return n;
}

template <>
MPSNNFilterNode* map_node<OpKind::Dropout>(Builder& b, const FilterNode& f) {
  const auto& a = b.attrs<DropoutAttrs>(f);
  return [MPSCNNDropoutNode nodeWithSource:b.image(f.sources()[0])
                           keepProbability:a.keep_probability
                                      seed:NSUInteger(a.seed)
                        maskStrideInPixels:MTLSizeMake(NSUInteger(a.mask_stride[0]), NSUInteger(a.mask_stride[1]),
                                                       NSUInteger(a.mask_stride[2]))];
}

template <>
MPSNNFilterNode* map_node<OpKind::Upsampling>(Builder& b, const FilterNode& f) {
  const auto& a = b.attrs<UpsamplingAttrs>(f);
  MPSNNImageNode* s = b.image(f.sources()[0]);
  const auto x = NSUInteger(a.scale_factor_x), y = NSUInteger(a.scale_factor_y);
  if (a.mode == UpsamplingMode::nearest)
    return [MPSCNNUpsamplingNearestNode nodeWithSource:s integerScaleFactorX:x integerScaleFactorY:y];
  return [MPSCNNUpsamplingBilinearNode nodeWithSource:s
                                  integerScaleFactorX:x
                                  integerScaleFactorY:y
                                         alignCorners:a.align_corners];
}

template <>
MPSNNFilterNode* map_node<OpKind::Scale>(Builder& b, const FilterNode& f) {
  const auto& a = b.attrs<ScaleAttrs>(f);
  MPSNNImageNode* s = b.image(f.sources()[0]);
  const MTLSize size = MTLSizeMake(NSUInteger(a.output_width), NSUInteger(a.output_height), NSUInteger(a.output_depth));
  MpsnnTransformProvider* provider = nil;
  if (a.transform_provider) {
    const auto g = b.geometry.find(&f);
    provider = [[MpsnnTransformProvider alloc]
        initWithTransform:(g != b.geometry.end() ? g->second->transform : ScaleTransform{})];
  }
  if (a.mode == ScaleMode::lanczos)
    return [MPSNNLanczosScaleNode nodeWithSource:s transformProvider:provider outputSize:size];
  return [MPSNNBilinearScaleNode nodeWithSource:s transformProvider:provider outputSize:size];
}

// Losses: their labels node is MPS's inputLabels.
void bind_labels(Builder& b, const FilterNode& f, MPSNNLabelsNode* labels) {
  if (f.source_states().empty()) return;
  const StateNodePtr& s = f.source_states()[0];
  labels.handle = b.handle_for(s.get(), s->handle);
  b.states[s.get()] = labels;
}

template <>
MPSNNFilterNode* map_node<OpKind::Loss>(Builder& b, const FilterNode& f) {
  const LossDescriptor& d = b.attrs<LossAttrs>(f).loss;
  MPSCNNLossNode* n = [MPSCNNLossNode nodeWithSource:b.image(f.sources()[0])
                                      lossDescriptor:loss_descriptor(d, d.reduction)];
  bind_labels(b, f, n.inputLabels);
  return n;
}

template <>
MPSNNFilterNode* map_node<OpKind::YOLOLoss>(Builder& b, const FilterNode& f) {
  const auto& a = b.attrs<YOLOLossAttrs>(f);
  NSData* anchors = [NSData dataWithBytes:a.anchor_boxes.data() length:a.anchor_boxes.size() * sizeof(float)];
  MPSCNNYOLOLossDescriptor* d =
      [MPSCNNYOLOLossDescriptor cnnLossDescriptorWithXYLossType:MPSCNNLossType(int(a.xy.type))
                                                     WHLossType:MPSCNNLossType(int(a.wh.type))
                                             confidenceLossType:MPSCNNLossType(int(a.confidence.type))
                                                classesLossType:MPSCNNLossType(int(a.classes.type))
                                                  reductionType:MPSCNNReductionType(int(a.reduction))
                                                    anchorBoxes:anchors
                                            numberOfAnchorBoxes:NSUInteger(a.number_of_anchor_boxes)];
  d.XYLossDescriptor = loss_descriptor(a.xy, a.reduction);
  d.WHLossDescriptor = loss_descriptor(a.wh, a.reduction);
  d.confidenceLossDescriptor = loss_descriptor(a.confidence, a.reduction);
  d.classesLossDescriptor = loss_descriptor(a.classes, a.reduction);
  d.rescore = a.rescore;
  d.scaleXY = a.scale_xy;
  d.scaleWH = a.scale_wh;
  d.scaleNoObject = a.scale_no_object;
  d.scaleObject = a.scale_object;
  d.scaleClass = a.scale_class;
  d.minIOUForObjectPresence = a.min_iou_for_object_presence;
  d.maxIOUForObjectAbsence = a.max_iou_for_object_absence;
  MPSCNNYOLOLossNode* n = [MPSCNNYOLOLossNode nodeWithSource:b.image(f.sources()[0]) lossDescriptor:d];
  bind_labels(b, f, n.inputLabels);
  return n;
}

// Internal kinds are compiler-inserted steps, never graph nodes: the conversions at the graph's
// boundary are MPSMatrixCopyToImage / MPSImageCopyToMatrix here, and poison fills are refused for
// graph-level backends (passes/pipeline.cpp).
template <>
MPSNNFilterNode* map_node<OpKind::Convert>(Builder&, const FilterNode& f) {
  MPSNN_THROW(GraphError, f.context(), " is a compiler-inserted conversion, not a graph node");
}
template <>
MPSNNFilterNode* map_node<OpKind::Fill>(Builder&, const FilterNode& f) {
  MPSNN_THROW(GraphError, f.context(), " is a compiler-inserted fill, not a graph node");
}

// Gradient kinds ---------------------------------------------------------------------------------

// The forward node whose result state a gradient node reads.
const FilterNode* forward_of(const FilterNode& g) {
  for (const auto& s : g.source_states())
    if (auto p = s->producer())
      if (gradient_kind(p->kind()) == g.kind()) return p.get();
  return nullptr;
}

// Which of the forward node's per-source gradients this node is.
size_t gradient_index(Builder& b, const FilterNode& g, const FilterNode& forward) {
  if (g.kind() == OpKind::ArithmeticGradient)
    return b.attrs<ArithmeticAttrs>(g).is_secondary_source_filter ? 1 : 0;
  if (g.kind() == OpKind::ConcatenationGradient) {
    const int64_t k = b.attrs<ConcatenationAttrs>(g).source_index;
    if (k >= 0) return size_t(k);
    for (size_t i = 0; i < forward.sources().size(); ++i)
      if (g.sources().size() > 1 && forward.sources()[i] == g.sources()[1]) return i;
  }
  return 0;
}

// The MPS gradient node of `g`, of class `expected`: MPS's own (training graph or gradient filter
// of the forward node). Its result image stands for g's.
MPSNNFilterNode* gradient_node(Builder& b, const FilterNode& g, Class expected) {
  const FilterNode* forward = forward_of(g);
  MPSNN_CHECK(forward != nullptr && b.filters.count(forward), UnsupportedError, g.context(),
              " has no forward node in this graph; the metal backend makes gradient nodes from their forward "
              "node (MPS's gradientFilterWithSources:), so a gradient node needs its forward node's state");
  MPSNNFilterNode* mf = b.filters.at(forward);
  MPSNNImageNode* incoming = b.image(g.sources()[0]);
  const size_t index = gradient_index(b, g, *forward);
  MPSNNImageNode* inference_source = index < forward->sources().size() ? b.image(forward->sources()[index]) : nil;
  MPSNNFilterNode* node = nil;
  for (const auto& a : b.auto_gradients[(__bridge const void*)mf])
    if (a.gradient_source == incoming && a.inference_source == inference_source) node = a.node;
  if (node == nil) {
    NSArray<MPSNNGradientFilterNode*>* all = [mf gradientFiltersWithSources:@[ incoming ]];
    MPSNN_CHECK(index < all.count, GraphError, g.context(), " MPS made ", all.count,
                " gradient node(s) for the forward node; expected one for source ", index);
    node = all[index];
  }
  MPSNN_CHECK([node isKindOfClass:expected], GraphError, g.context(), " MPS made a ",
              NSStringFromClass([node class]).UTF8String, " where mpsnn expects a ",
              NSStringFromClass(expected).UTF8String);
  return node;
}

template <>
MPSNNFilterNode* map_node<OpKind::PoolingGradient>(Builder& b, const FilterNode& f) {
  switch (b.attrs<PoolingAttrs>(f).mode) {
    case PoolingMode::max: return gradient_node(b, f, [MPSCNNPoolingMaxGradientNode class]);
    case PoolingMode::average: return gradient_node(b, f, [MPSCNNPoolingAverageGradientNode class]);
    case PoolingMode::l2_norm: return gradient_node(b, f, [MPSCNNPoolingL2NormGradientNode class]);
    case PoolingMode::dilated_max: return gradient_node(b, f, [MPSCNNDilatedPoolingMaxGradientNode class]);
  }
  return nil;
}

template <>
MPSNNFilterNode* map_node<OpKind::NeuronGradient>(Builder& b, const FilterNode& f) {
  return gradient_node(b, f, [MPSCNNNeuronGradientNode class]);
}

template <>
MPSNNFilterNode* map_node<OpKind::ConvolutionGradient>(Builder& b, const FilterNode& f) {
  const auto& a = b.attrs<ConvolutionAttrs>(f);
  Class cls = [MPSCNNConvolutionGradientNode class];
  if (a.variant == ConvolutionVariant::fully_connected) cls = [MPSCNNFullyConnectedGradientNode class];
  if (a.variant == ConvolutionVariant::transpose) cls = [MPSCNNConvolutionTransposeGradientNode class];
  auto* n = (MPSCNNConvolutionGradientNode*)gradient_node(b, f, cls);
  n.trainingStyle = mps_training_style(a.training_style);
  return n;
}

template <>
MPSNNFilterNode* map_node<OpKind::BatchNormalizationGradient>(Builder& b, const FilterNode& f) {
  auto* n = (MPSCNNBatchNormalizationGradientNode*)gradient_node(b, f, [MPSCNNBatchNormalizationGradientNode class]);
  n.trainingStyle = mps_training_style(b.attrs<BatchNormalizationAttrs>(f).training_style);
  return n;
}

template <>
MPSNNFilterNode* map_node<OpKind::InstanceNormalizationGradient>(Builder& b, const FilterNode& f) {
  auto* n = (MPSCNNInstanceNormalizationGradientNode*)gradient_node(b, f,
                                                                     [MPSCNNInstanceNormalizationGradientNode class]);
  n.trainingStyle = mps_training_style(b.attrs<InstanceNormalizationAttrs>(f).training_style);
  return n;
}

template <>
MPSNNFilterNode* map_node<OpKind::ArithmeticGradient>(Builder& b, const FilterNode& f) {
  switch (b.attrs<ArithmeticAttrs>(f).op) {
    case ArithmeticOp::add: return gradient_node(b, f, [MPSNNAdditionGradientNode class]);
    case ArithmeticOp::subtract: return gradient_node(b, f, [MPSNNSubtractionGradientNode class]);
    case ArithmeticOp::multiply: return gradient_node(b, f, [MPSNNMultiplicationGradientNode class]);
    case ArithmeticOp::divide:
      // No macOS has MPSNNDivisionGradientNode (nor does mpsnn make one); unsupported_nodes()
      // refuses such graphs before any node is made.
      MPSNN_THROW(UnsupportedError, f.context(), " MPS has no MPSNNDivisionGradientNode");
  }
  return nil;
}

template <>
MPSNNFilterNode* map_node<OpKind::ConcatenationGradient>(Builder& b, const FilterNode& f) {
  return gradient_node(b, f, [MPSNNConcatenationGradientNode class]);
}

template <>
MPSNNFilterNode* map_node<OpKind::SoftMaxGradient>(Builder& b, const FilterNode& f) {
  if (b.attrs<SoftMaxAttrs>(f).log) return gradient_node(b, f, [MPSCNNLogSoftMaxGradientNode class]);
  return gradient_node(b, f, [MPSCNNSoftMaxGradientNode class]);
}

template <>
MPSNNFilterNode* map_node<OpKind::NormalizationGradient>(Builder& b, const FilterNode& f) {
  switch (b.attrs<NormalizationAttrs>(f).mode) {
    case NormalizationMode::cross_channel:
      return gradient_node(b, f, [MPSCNNCrossChannelNormalizationGradientNode class]);
    case NormalizationMode::spatial: return gradient_node(b, f, [MPSCNNSpatialNormalizationGradientNode class]);
    case NormalizationMode::local_contrast:
      return gradient_node(b, f, [MPSCNNLocalContrastNormalizationGradientNode class]);
  }
  return nil;
}

template <>
MPSNNFilterNode* map_node<OpKind::UpsamplingGradient>(Builder& b, const FilterNode& f) {
  if (b.attrs<UpsamplingAttrs>(f).mode == UpsamplingMode::nearest)
    return gradient_node(b, f, [MPSCNNUpsamplingNearestGradientNode class]);
  return gradient_node(b, f, [MPSCNNUpsamplingBilinearGradientNode class]);
}

template <>
MPSNNFilterNode* map_node<OpKind::DropoutGradient>(Builder& b, const FilterNode& f) {
  return gradient_node(b, f, [MPSCNNDropoutGradientNode class]);
}

using MapFn = MPSNNFilterNode* (*)(Builder&, const FilterNode&);
// Indexed by OpKind: a row of op_list.def without its map_node specialization fails to compile.
constexpr MapFn kNodeMap[] = {
#define MPSNN_OP(kind, name, attrs, gradient) &map_node<OpKind::kind>,
#include "graph/op_list.def"
#undef MPSNN_OP
};
static_assert(sizeof(kNodeMap) / sizeof(kNodeMap[0]) == size_t(kNumOpKinds), "one MPS mapping per op_list.def row");

// Where a state buffer of mpsnn's layout lives in the MPS state that MPS produced (by the buffer's
// role); nil when the backend cannot read it (MPS keeps e.g. pooling and dropout states opaque).
id<MTLBuffer> state_buffer(MPSState* s, const char* role) {
  if (!role) return nil;
  const std::string r(role);
  if ([s isKindOfClass:[MPSCNNConvolutionGradientState class]]) {
    auto* c = (MPSCNNConvolutionGradientState*)s;
    if (r == "gradient_for_weights") return c.gradientForWeights;
    if (r == "gradient_for_biases") return c.gradientForBiases;
  }
  if ([s isKindOfClass:[MPSCNNBatchNormalizationState class]]) {
    auto* n = (MPSCNNBatchNormalizationState*)s;
    if (r == "gradient_for_gamma") return [n gradientForGamma];
    if (r == "gradient_for_beta") return [n gradientForBeta];
    if (r == "mean") return [n mean];
    if (r == "variance") return [n variance];
    if (r == "gamma") return [n gamma];
    if (r == "beta") return [n beta];
  }
  if ([s isKindOfClass:[MPSCNNInstanceNormalizationGradientState class]]) {
    auto* n = (MPSCNNInstanceNormalizationGradientState*)s;
    if (r == "gradient_for_gamma") return n.gradientForGamma;
    if (r == "gradient_for_beta") return n.gradientForBeta;
    if (r == "gamma") return n.gamma;
    if (r == "beta") return n.beta;
  }
  return nil;
}

bool role_is_readable(const char* role) {
  if (!role) return false;
  for (const char* r : {"gradient_for_weights", "gradient_for_biases", "gradient_for_gamma", "gradient_for_beta", "mean",
                        "variance", "gamma", "beta"})
    if (std::strcmp(r, role) == 0) return true;
  return false;
}

// A caller buffer as MTLBuffer + offset: the shared buffer the Metal allocator made, or a staging
// buffer for memory from elsewhere (copied in now, and back after the command buffer completes).
struct Bound {
  id<MTLBuffer> buffer = nil;
  NSUInteger offset = 0;
  bool staged = false;
};
Bound bind(id<MTLDevice> device, const TensorRef& r, bool input) {
  Bound b;
  size_t offset = 0;
  if (void* found = buffer_containing(r.data, &offset)) {
    b.buffer = (__bridge id<MTLBuffer>)found;
    b.offset = NSUInteger(offset);
    return b;
  }
  const size_t bytes = std::max<size_t>(r.dense_bytes(), 1);
  b.buffer = input ? [device newBufferWithBytes:r.data length:bytes options:MTLResourceStorageModeShared]
                   : [device newBufferWithLength:bytes options:MTLResourceStorageModeShared];
  if (b.buffer == nil) throw BackendError("[metal] could not make a staging buffer of " + std::to_string(bytes) + " bytes");
  b.staged = true;
  return b;
}

// An MPSMatrix over a dense NHWC value: one row per image, H*W*C elements per row.
MPSMatrix* matrix_over(const Bound& b, const TensorRef& r) {
  const NSUInteger columns = NSUInteger(r.shape.h * r.shape.w * r.shape.c);
  const NSUInteger row_bytes = columns * NSUInteger(dtype_size(r.dtype));
  MPSMatrixDescriptor* d = [MPSMatrixDescriptor matrixDescriptorWithRows:NSUInteger(r.shape.n)
                                                                 columns:columns
                                                                rowBytes:row_bytes
                                                                dataType:matrix_type(r.dtype)];
  return [[MPSMatrix alloc] initWithBuffer:b.buffer offset:b.offset descriptor:d];
}

class MetalGraphKernel final : public Kernel {
 public:
  MetalGraphKernel(const GraphKernelSpec& spec, Device& device) : def_(*spec.def), spec_(spec) {
    auto& md = dynamic_cast<MetalDevice&>(device);
    device_ = (__bridge id<MTLDevice>)md.native();
    @autoreleasepool {
      build(spec);
    }
  }

  void run(const KernelArgs& args, KernelState*) const override {
    auto* stream = dynamic_cast<MetalStream*>(args.stream);
    MPSNN_CHECK(stream != nullptr, BackendError, "[metal] the graph kernel ran on a stream of another device");
    std::lock_guard<std::mutex> lock(mutex_);
    @autoreleasepool {
      refresh_params(args);
      id<MTLCommandBuffer> cb = (__bridge id<MTLCommandBuffer>)stream->command_buffer();
      encode(cb, args, *stream);
    }
    // A training graph's next tasks (NNGraph's training updates) read the parameter gradients on
    // the CPU, as they do on every device whose memory the CPU addresses: the work must be done
    // when this step returns, as on the CPU's host stream.
    if (!def_.updates.empty()) stream->synchronize();
  }

 private:
  void build(const GraphKernelSpec& spec);
  void refresh_params(const KernelArgs& args) const;
  void encode(id<MTLCommandBuffer> cb, const KernelArgs& args, MetalStream& stream) const;
  // Copies MPS state buffers into the caller's buffers `first..first+count` of the outputs.
  void copy_state(id<MTLCommandBuffer> cb, MPSState* s, const KernelArgs& args, size_t first, size_t count) const;

  const GraphDef& def_;
  GraphKernelSpec spec_;
  id<MTLDevice> device_;
  MPSNNGraph* graph_ = nil;
  // Positions of the graph's handle lists in mpsnn's orders.
  std::vector<size_t> source_order_;        // MPS source image j -> mpsnn source index
  std::vector<size_t> source_state_order_;  // MPS source state j -> mpsnn source state index
  std::vector<int> intermediate_order_;     // MPS intermediate j -> index in GraphDef::outputs
  std::vector<int> result_state_order_;     // MPS result state j -> index in GraphDef::result_states
  std::vector<size_t> state_first_output_;  // per GraphDef::result_states: its first buffer in outputs
  std::vector<size_t> source_state_first_input_, source_state_first_output_;
  // Data source bridges of parameter slots (spec.param_nodes order) and the versions they hold.
  std::vector<id> param_bridges_;
  mutable std::vector<uint64_t> param_versions_;
  // Per forward trainable node: the result states (GraphDef::result_states) receiving the parameter
  // gradients MPS hands its data source (training updates and exported gradient states).
  std::unordered_map<const FilterNode*, std::vector<size_t>> sink_states_;
  mutable const KernelArgs* current_args_ = nullptr;  // during an encode (the gradient sinks' target)
  mutable std::mutex mutex_;
};

// Everything of the graph the Metal backend cannot run, found before any MPS node is made.
std::vector<std::string> unsupported_nodes(const GraphKernelSpec& spec, const std::vector<size_t>& state_first_output) {
  std::vector<std::string> out;
  const GraphDef& def = *spec.def;
  for (const auto& f : def.filters)
    if (f->kind() == OpKind::ArithmeticGradient &&
        std::get<ArithmeticAttrs>(def.frozen_of(*f).attrs).op == ArithmeticOp::divide)
      out.push_back(f->context() + " is a division gradient: MPS has no MPSNNDivisionGradientNode");
  for (size_t i = 0; i < def.source_images.size(); ++i) {
    if (!spec.key->dense[i])
      out.push_back("[MPSNNGraph] source image " + std::to_string(i) +
                    " is a channel slice of a wider image; the metal backend copies dense images only");
    if (matrix_type(spec.inputs[i].dtype) == MPSDataTypeInvalid)
      out.push_back("[MPSNNGraph] source image " + std::to_string(i) + " is " + format_name(spec.key->formats[i]) +
                    "; the metal backend reads float32, float16 and unorm8 images");
  }
  for (size_t j = 0; j < def.outputs.size(); ++j)
    if (def.outputs[j] && matrix_type(spec.outputs[j].dtype) == MPSDataTypeInvalid)
      out.push_back("[MPSNNGraph] output " + std::to_string(j) +
                    " has a format the metal backend cannot write (float32, float16 and unorm8 only)");
  // A trainable gradient node's state is filled from MPS's data-source callback, which MPS makes
  // only for nodes it trains.
  for (size_t k = 0; k < def.result_states.size(); ++k) {
    auto producer = def.result_states[k]->producer();
    if (!producer) continue;
    const Attrs& a = def.frozen_of(*producer).attrs;
    TrainingStyle style = TrainingStyle::update_device_gpu;
    if (producer->kind() == OpKind::ConvolutionGradient) style = std::get<ConvolutionAttrs>(a).training_style;
    else if (producer->kind() == OpKind::BatchNormalizationGradient) style = std::get<BatchNormalizationAttrs>(a).training_style;
    else if (producer->kind() == OpKind::InstanceNormalizationGradient) style = std::get<InstanceNormalizationAttrs>(a).training_style;
    if (style == TrainingStyle::update_device_none)
      out.push_back(producer->context() + " exports its parameter gradients with training style updateDeviceNone; "
                                          "MPS computes none for such a node");
  }
  // Result states are read back by their buffers' roles; MPS keeps the others opaque.
  for (size_t k = 0; k < def.result_states.size(); ++k)
    for (size_t b = 0; b < spec.result_state_buffers[k]; ++b) {
      const char* role = spec.outputs[state_first_output[k] + b].role;
      if (role_is_readable(role)) continue;
      auto producer = def.result_states[k]->producer();
      out.push_back((producer ? producer->context() : std::string("[MPSNNGraph]")) +
                    " exports a result state whose buffer '" + (role ? role : "unnamed") +
                    "' MPS keeps inside its own state object; the metal backend can export parameter gradient "
                    "and normalization statistics states only");
    }
  return out;
}

void MetalGraphKernel::build(const GraphKernelSpec& spec) {
  const size_t n_outputs = def_.outputs.size();
  size_t next = n_outputs;
  for (size_t count : spec.result_state_buffers) {
    state_first_output_.push_back(next);
    next += count;
  }
  size_t next_in = def_.source_images.size();
  for (size_t i = 0; i < def_.source_states.size(); ++i) {
    source_state_first_input_.push_back(next_in);
    source_state_first_output_.push_back(next);
    next_in += i < spec.key->state_inputs.size() ? spec.key->state_inputs[i].size() : 0;
    next += i < spec.key->state_outputs.size() ? spec.key->state_outputs[i].size() : 0;
  }
  const std::vector<std::string> bad = unsupported_nodes(spec, state_first_output_);
  if (!bad.empty()) {
    std::string all;
    for (const auto& s : bad) all += (all.empty() ? "" : "; ") + s;
    MPSNN_THROW(UnsupportedError, "[MPSNNGraph] the metal backend cannot run this graph: ", all);
  }

  Builder b{spec_, device_, *spec.params, {}, {}, {}, {}, {}, {}, {}, {}};
  for (const auto& g : spec_.geometry) b.geometry[g.first] = &g.second;
  for (const auto& s : spec_.shapes) b.shapes[s.first] = s.second;
  Builder* bp = &b;
  bool asked_training_graph = false;
  for (const auto& f : def_.filters) {
    if (is_gradient_kind(f->kind()) && !asked_training_graph) {
      // MPS's own training graph from every loss node made so far; gradient_node() takes its
      // nodes where they match mpsnn's gradient nodes.
      asked_training_graph = true;
      for (const auto& l : def_.filters) {
        if (l->kind() != OpKind::Loss && l->kind() != OpKind::YOLOLoss) continue;
        auto it = b.filters.find(l.get());
        if (it == b.filters.end()) continue;
        [it->second trainingGraphWithSourceGradient:nil
                                        nodeHandler:^(MPSNNFilterNode* gradientNode, MPSNNFilterNode* inferenceNode,
                                                      MPSNNImageNode* inferenceSource, MPSNNImageNode* gradientSource) {
                                          bp->auto_gradients[(__bridge const void*)inferenceNode].push_back(
                                              {gradientNode, inferenceSource, gradientSource});
                                        }];
      }
    }
    MPSNNFilterNode* m = kNodeMap[size_t(f->kind())](b, *f);
    MPSNN_CHECK(m != nil, GraphError, f->context(), " MPS made no node for it");
    b.finish(*f, m);
    b.filters[f.get()] = m;
    MPSNNImageNode* r = m.resultImage;
    b.configure(*f->result_image(), r);
    r.handle = b.handle_for(f->result_image().get(), f->result_image()->handle);
    b.images[f->result_image().get()] = r;
  }
  // Result states of trainable gradient nodes (their parameter gradients: training updates, or
  // exported) are no MPS state nodes: MPS hands them to the data source, and the bridge's sink
  // copies them (below). Every other exported state is an MPS result state, asked for now.
  for (size_t k = 0; k < def_.result_states.size(); ++k) {
    auto producer = def_.result_states[k]->producer();
    if (producer && is_gradient_kind(producer->kind())) {
      if (const FilterNode* forward = forward_of(*producer)) sink_states_[forward].push_back(k);
    } else if (k < def_.num_exported_states) {
      b.state(def_.result_states[k]);
    }
  }

  NSMutableArray<MPSNNImageNode*>* results = [NSMutableArray array];
  std::unique_ptr<BOOL[]> needed(new BOOL[def_.results.size()]);
  for (size_t k = 0; k < def_.results.size(); ++k) {
    [results addObject:b.image(def_.results[k])];
    needed[k] = def_.results_needed[k] ? YES : NO;
  }
  graph_ = [[MPSNNGraph alloc] initWithDevice:device_ resultImages:results resultsAreNeeded:needed.get()];
  MPSNN_CHECK(graph_ != nil, GraphError, "[MPSNNGraph] MPS refused the graph mpsnn built from these nodes");
  graph_.format = mps_format(spec.graph_format);
  // Results and exported states are copied into the caller's memory on the same command buffer.
  graph_.outputStateIsTemporary = YES;
  graph_.destinationImageAllocator = [[MpsnnImageAllocator alloc] initTemporary:YES];

  auto index_of = [&](id<MPSHandle> h, auto&& nodes) -> int {
    for (size_t i = 0; i < nodes.size(); ++i)
      if (nodes[i] && b.handles.count(nodes[i].get()) && b.handles.at(nodes[i].get()) == h) return int(i);
    return -1;
  };
  for (id<MPSHandle> h in graph_.sourceImageHandles) {
    const int i = index_of(h, def_.source_images);
    MPSNN_CHECK(i >= 0, GraphError, "[MPSNNGraph] MPS lists a source image mpsnn's graph does not have");
    source_order_.push_back(size_t(i));
  }
  for (id<MPSHandle> h in graph_.sourceStateHandles) {
    const int i = index_of(h, def_.source_states);
    MPSNN_CHECK(i >= 0, GraphError, "[MPSNNGraph] MPS lists a source state mpsnn's graph does not have");
    source_state_order_.push_back(size_t(i));
  }
  for (id<MPSHandle> h in graph_.intermediateImageHandles) intermediate_order_.push_back(index_of(h, def_.outputs));
  for (id<MPSHandle> h in graph_.resultStateHandles) result_state_order_.push_back(index_of(h, def_.result_states));

  for (size_t i = 0; i < spec.param_nodes.size(); ++i) {
    auto it = b.data_sources.find(spec.param_nodes[i]);
    param_bridges_.push_back(it == b.data_sources.end() ? nil : it->second);
    const ParamSlot* slot = spec.params->slot_of(*spec.param_nodes[i]);
    param_versions_.push_back(slot ? slot->version() : 0);
  }
  for (const auto& entry : sink_states_) {
    auto it = b.data_sources.find(entry.first);
    if (it == b.data_sources.end()) continue;
    const FilterNode* forward = entry.first;
    MpsnnGradientSink sink = [this, forward](id<MTLCommandBuffer> cb, MPSState* s) {
      if (!current_args_) return;
      for (size_t k : sink_states_.at(forward))
        copy_state(cb, s, *current_args_, state_first_output_[k], spec_.result_state_buffers[k]);
    };
    if ([it->second isKindOfClass:[MpsnnConvolutionDataSource class]])
      ((MpsnnConvolutionDataSource*)it->second).gradientSink = sink;
    else if ([it->second isKindOfClass:[MpsnnBatchNormalizationDataSource class]])
      ((MpsnnBatchNormalizationDataSource*)it->second).gradientSink = sink;
    else if ([it->second isKindOfClass:[MpsnnInstanceNormalizationDataSource class]])
      ((MpsnnInstanceNormalizationDataSource*)it->second).gradientSink = sink;
  }
}

// A new parameter version (a training update, reload_from_data_sources): the bridges take the
// values and MPS re-reads them.
void MetalGraphKernel::refresh_params(const KernelArgs& args) const {
  bool changed = false;
  for (size_t i = 0; i < param_bridges_.size() && int(i) < args.num_params; ++i) {
    const ParamSnapshot& p = args.params[i];
    if (param_bridges_[i] == nil || p.version == param_versions_[i]) continue;
    id bridge = param_bridges_[i];
    if ([bridge isKindOfClass:[MpsnnConvolutionDataSource class]] && p.values.conv)
      [(MpsnnConvolutionDataSource*)bridge setParams:p.values.conv];
    else if ([bridge isKindOfClass:[MpsnnBatchNormalizationDataSource class]] && p.values.norm)
      [(MpsnnBatchNormalizationDataSource*)bridge setParams:p.values.norm];
    else if ([bridge isKindOfClass:[MpsnnInstanceNormalizationDataSource class]] && p.values.norm)
      [(MpsnnInstanceNormalizationDataSource*)bridge setParams:p.values.norm];
    param_versions_[i] = p.version;
    changed = true;
  }
  if (changed) [graph_ reloadFromDataSources];
}

namespace {
// One single-image MPSImage per image of a dense NHWC value, filled on the GPU from its buffer.
MPSImageBatch* import_images(id<MTLDevice> device, id<MTLCommandBuffer> cb, const TensorRef& r) {
  MPSNN_CHECK(r.dense(), UnsupportedError, "[MPSNNGraph] the metal backend copies dense images only");
  const Bound bound = bind(device, r, true);
  NSMutableArray<MPSImage*>* batch = [NSMutableArray array];
  MPSImageDescriptor* d = [MPSImageDescriptor imageDescriptorWithChannelFormat:mps_format(format_of(r.dtype))
                                                                         width:NSUInteger(r.shape.w)
                                                                        height:NSUInteger(r.shape.h)
                                                               featureChannels:NSUInteger(r.shape.c)];
  d.usage = MTLTextureUsageShaderRead | MTLTextureUsageShaderWrite;
  for (int64_t k = 0; k < r.shape.n; ++k) [batch addObject:[[MPSImage alloc] initWithDevice:device imageDescriptor:d]];
  MPSMatrixCopyToImage* copy = [[MPSMatrixCopyToImage alloc] initWithDevice:device
                                                                 dataLayout:MPSDataLayoutHeightxWidthxFeatureChannels];
  [copy encodeBatchToCommandBuffer:cb sourceMatrix:matrix_over(bound, r) destinationImages:batch];
  return batch;
}
}  // namespace

void MetalGraphKernel::encode(id<MTLCommandBuffer> cb, const KernelArgs& args, MetalStream& stream) const {
  std::vector<std::pair<Bound, TensorRef>> staged;  // caller memory outside Metal buffers
  auto export_images = [&](MPSImageBatch* batch, const TensorRef& r) {
    if (!r.data || batch.count == 0) return;
    MPSNN_CHECK(r.dense(), UnsupportedError, "[MPSNNGraph] the metal backend writes dense images only");
    const Bound bound = bind(device_, r, false);
    MPSImageCopyToMatrix* copy = [[MPSImageCopyToMatrix alloc] initWithDevice:device_
                                                                   dataLayout:MPSDataLayoutHeightxWidthxFeatureChannels];
    [copy encodeBatchToCommandBuffer:cb sourceImages:batch destinationMatrix:matrix_over(bound, r)];
    if (bound.staged) staged.emplace_back(bound, r);
  };

  if (spec_.poison_outputs) {
    id<MTLBlitCommandEncoder> blit = [cb blitCommandEncoder];
    for (int j = 0; j < args.num_outputs; ++j) {
      const TensorRef& r = args.outputs[j];
      size_t offset = 0;
      void* found = r.data ? buffer_containing(r.data, &offset) : nullptr;
      if (found)
        [blit fillBuffer:(__bridge id<MTLBuffer>)found range:NSMakeRange(offset, r.dense_bytes()) value:0xff];
    }
    [blit endEncoding];
  }

  std::vector<MPSImageBatch*> ours;
  for (size_t i = 0; i < def_.source_images.size(); ++i) ours.push_back(import_images(device_, cb, args.inputs[i]));
  NSMutableArray<MPSImageBatch*>* sources = [NSMutableArray array];
  for (size_t i : source_order_) [sources addObject:ours[i]];

  // Loss labels: one MPSCNNLossLabels per batch item over the caller's labels (and weights).
  std::vector<NSMutableArray<MPSCNNLossLabels*>*> labels(def_.source_states.size());
  for (size_t i = 0; i < def_.source_states.size(); ++i) {
    const size_t in = source_state_first_input_[i];
    const size_t count = i < spec_.key->state_inputs.size() ? spec_.key->state_inputs[i].size() : 0;
    if (count == 0) continue;
    MPSImageBatch* l = import_images(device_, cb, args.inputs[in]);
    MPSImageBatch* w = count > 1 ? import_images(device_, cb, args.inputs[in + 1]) : nil;
    const ImageShape loss = spec_.outputs[source_state_first_output_[i]].shape;
    labels[i] = [NSMutableArray array];
    for (NSUInteger k = 0; k < l.count; ++k)
      [labels[i] addObject:[[MPSCNNLossLabels alloc]
                                  initWithDevice:device_
                                   lossImageSize:MTLSizeMake(NSUInteger(loss.w), NSUInteger(loss.h), NSUInteger(loss.c))
                                     labelsImage:l[k]
                                    weightsImage:(w ? w[k] : nil)]];
  }
  NSMutableArray<MPSStateBatch*>* states = nil;
  if (!source_state_order_.empty()) {
    states = [NSMutableArray array];
    for (size_t i : source_state_order_) [states addObject:labels[i]];
  }

  NSMutableArray<MPSImageBatch*>* intermediates = [NSMutableArray array];
  NSMutableArray<MPSStateBatch*>* destination = [NSMutableArray array];
  bool single = true;  // one image per source: the plain encode, else the batch encode
  for (MPSImageBatch* s in sources) single = single && s.count == 1;
  MPSImageBatch* result = nil;
  current_args_ = &args;
  if (single) {
    NSMutableArray<MPSImage*>* images = [NSMutableArray array];
    for (MPSImageBatch* s in sources) [images addObject:s[0]];
    NSMutableArray<MPSState*>* one_states = nil;
    if (states) {
      one_states = [NSMutableArray array];
      for (MPSStateBatch* s in states) [one_states addObject:s[0]];
    }
    NSMutableArray<MPSImage*>* inter = [NSMutableArray array];
    NSMutableArray<MPSState*>* dest = [NSMutableArray array];
    MPSImage* r = [graph_ encodeToCommandBuffer:cb
                                   sourceImages:images
                                   sourceStates:one_states
                             intermediateImages:inter
                              destinationStates:dest];
    result = r ? @[ r ] : nil;
    for (MPSImage* i in inter) [intermediates addObject:@[ i ]];
    for (MPSState* s in dest) [destination addObject:@[ s ]];
  } else {
    result = [graph_ encodeBatchToCommandBuffer:cb
                                   sourceImages:sources
                                   sourceStates:states
                              intermediateImages:intermediates
                              destinationStates:destination];
  }
  current_args_ = nullptr;
  MPSNN_CHECK(result != nil || !def_.results_needed[0], BackendError, "[MPSNNGraph] MPS encoded no result image");

  if (result) export_images(result, args.outputs[0]);
  for (NSUInteger j = 0; j < intermediates.count && j < intermediate_order_.size(); ++j)
    if (intermediate_order_[j] > 0) export_images(intermediates[j], args.outputs[size_t(intermediate_order_[j])]);
  // A batch's states of one node share their parameter gradients and statistics (MPS reduces
  // over the batch), so the first item's buffers are the node's.
  for (NSUInteger j = 0; j < destination.count && j < result_state_order_.size(); ++j) {
    const int k = result_state_order_[j];
    if (k < 0 || destination[j].count == 0) continue;
    copy_state(cb, destination[j][0], args, state_first_output_[size_t(k)], spec_.result_state_buffers[size_t(k)]);
  }
  for (size_t i = 0; i < labels.size(); ++i) {
    if (!labels[i]) continue;
    NSMutableArray<MPSImage*>* loss = [NSMutableArray array];
    for (MPSCNNLossLabels* l in labels[i]) [loss addObject:[l lossImage]];
    export_images(loss, args.outputs[source_state_first_output_[i]]);
  }
  if (!staged.empty())
    stream.when_done([staged] {
      for (const auto& s : staged)
        std::memcpy(s.second.data, static_cast<const char*>(s.first.buffer.contents) + s.first.offset,
                    s.second.dense_bytes());
    });
}

void MetalGraphKernel::copy_state(id<MTLCommandBuffer> cb, MPSState* s, const KernelArgs& args, size_t first,
                                  size_t count) const {
  id<MTLBlitCommandEncoder> blit = [cb blitCommandEncoder];
  for (size_t b = 0; b < count; ++b) {
    const TensorRef& dst = args.outputs[first + b];
    if (!dst.data) continue;
    id<MTLBuffer> src = state_buffer(s, spec_.outputs[first + b].role);
    MPSNN_CHECK(src != nil, BackendError, "[MPSNNGraph] MPS produced a ", NSStringFromClass([s class]).UTF8String,
                " without the '", spec_.outputs[first + b].role ? spec_.outputs[first + b].role : "unnamed",
                "' buffer mpsnn's state has");
    size_t offset = 0;
    void* found = buffer_containing(dst.data, &offset);
    MPSNN_CHECK(found != nullptr, BackendError, "[MPSNNGraph] a state buffer is not Metal memory");
    const NSUInteger bytes = std::min<NSUInteger>(NSUInteger(dst.dense_bytes()), src.length);
    [blit copyFromBuffer:src
             sourceOffset:0
                 toBuffer:(__bridge id<MTLBuffer>)found
        destinationOffset:NSUInteger(offset)
                     size:bytes];
  }
  [blit endEncoding];
}
}  // namespace

std::unique_ptr<Kernel> make_graph_kernel(const GraphKernelSpec& spec, Device& device) {
  return std::make_unique<MetalGraphKernel>(spec, device);
}

}  // namespace mpsnn::metal
