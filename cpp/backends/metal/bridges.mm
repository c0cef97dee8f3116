// The Objective-C classes of objc_bridges.h.
#include "backends/metal/objc_bridges.h"

#include <algorithm>
#include <mutex>
#include <vector>

namespace mpsnn::metal {

NSString* ns_string(const std::optional<std::string>& s) {
  return s ? [NSString stringWithUTF8String:s->c_str()] : nil;
}

MPSNNNeuronDescriptor* neuron_descriptor(const NeuronDescriptor& n) {
  if (n.type == NeuronType::prelu) {
    NSData* slopes = [NSData dataWithBytes:n.data.data() length:n.data.size() * sizeof(float)];
    return [MPSNNNeuronDescriptor cnnNeuronPReLUDescriptorWithData:slopes noCopy:NO];
  }
  // mpsnn's NeuronType raw values are MPSCNNNeuronType's (graph.md §0.2, attrs.h).
  return [MPSNNNeuronDescriptor cnnNeuronDescriptorWithType:MPSCNNNeuronType(int(n.type)) a:n.a b:n.b c:n.c];
}

MPSCNNConvolutionDescriptor* convolution_descriptor(const ConvolutionDescriptor& d) {
  const auto kw = NSUInteger(d.kernel_width), kh = NSUInteger(d.kernel_height);
  const auto cin = NSUInteger(d.input_feature_channels), cout = NSUInteger(d.output_feature_channels);
  MPSCNNConvolutionDescriptor* desc = nil;
  if (d.depthwise) {
    desc = [MPSCNNDepthWiseConvolutionDescriptor cnnConvolutionDescriptorWithKernelWidth:kw
                                                                             kernelHeight:kh
                                                                     inputFeatureChannels:cin
                                                                    outputFeatureChannels:cout];
  } else if (d.sub_pixel_scale_factor > 1) {
    MPSCNNSubPixelConvolutionDescriptor* sub =
        [MPSCNNSubPixelConvolutionDescriptor cnnConvolutionDescriptorWithKernelWidth:kw
                                                                        kernelHeight:kh
                                                                inputFeatureChannels:cin
                                                               outputFeatureChannels:cout];
    sub.subPixelScaleFactor = NSUInteger(d.sub_pixel_scale_factor);
    desc = sub;
  } else {
    desc = [MPSCNNConvolutionDescriptor cnnConvolutionDescriptorWithKernelWidth:kw
                                                                    kernelHeight:kh
                                                            inputFeatureChannels:cin
                                                           outputFeatureChannels:cout];
  }
  desc.strideInPixelsX = NSUInteger(d.stride_x);
  desc.strideInPixelsY = NSUInteger(d.stride_y);
  desc.dilationRateX = NSUInteger(d.dilation_x);
  desc.dilationRateY = NSUInteger(d.dilation_y);
  if (!d.depthwise) desc.groups = NSUInteger(d.groups);
  if (d.fused_neuron.type != NeuronType::none) desc.fusedNeuronDescriptor = neuron_descriptor(d.fused_neuron);
  // A batch normalization the parameter store already folded into the weights is not applied twice.
  if (d.batch_norm && !d.batch_norm_folded) {
    const auto& bn = *d.batch_norm;
    [desc setBatchNormalizationParametersForInferenceWithMean:bn.mean.data()
                                                     variance:bn.variance.data()
                                                        gamma:bn.gamma.data()
                                                         beta:bn.beta.data()
                                                      epsilon:bn.epsilon];
  }
  return desc;
}

}  // namespace mpsnn::metal

using mpsnn::metal::convolution_descriptor;

// ------------------------------------------------------------------------------------------------
@implementation MpsnnConvolutionDataSource {
  std::mutex _mutex;
  std::shared_ptr<const mpsnn::ConvolutionParams> _params;
  std::vector<float> _bias;  // MPS takes a mutable float* for the biases
  BOOL _binary;
  NSString* _label;
  MPSCNNConvolutionDescriptor* _descriptor;
}
@synthesize gradientSink = _gradientSink;

- (instancetype)initWithParams:(std::shared_ptr<const mpsnn::ConvolutionParams>)params
                        binary:(BOOL)binary
                         label:(NSString*)label {
  if ((self = [super init])) {
    _binary = binary;
    _label = label;
    [self setParams:std::move(params)];
  }
  return self;
}

- (void)setParams:(std::shared_ptr<const mpsnn::ConvolutionParams>)params {
  std::lock_guard<std::mutex> lock(_mutex);
  _params = std::move(params);
  _bias = _params->bias;
  _descriptor = convolution_descriptor(_params->desc);
}

// Binary convolutions take one bit per weight (MPSDataTypeUInt1 packed in 32-bit words, as
// ConvolutionParams::binary_weights holds them); every other kind float32 OHWI.
- (MPSDataType)dataType {
  return _binary ? MPSDataTypeUnorm1 : MPSDataTypeFloat32;
}
- (MPSCNNConvolutionDescriptor*)descriptor {
  return _descriptor;
}
- (void*)weights {
  return _binary ? (void*)_params->binary_weights.data() : (void*)_params->weights.data();
}
- (float*)biasTerms {
  return _bias.empty() ? nullptr : _bias.data();
}
// The parameters were read from mpsnn's data source when the graph was made (graph/params.cpp).
- (BOOL)load {
  return YES;
}
- (void)purge {
}
- (NSString*)label {
  return _label;
}
- (id)copyWithZone:(NSZone*)zone {
  MpsnnConvolutionDataSource* c = [[MpsnnConvolutionDataSource alloc] initWithParams:_params
                                                                              binary:_binary
                                                                               label:_label];
  c.gradientSink = _gradientSink;
  return c;
}

// updateDeviceGPU: MPS offers the gradients right after the gradient kernel is encoded. mpsnn's own
// data source decides the update (NNGraph's training updates, run after the graph on the same
// command buffer with MPS's optimizers, register.mm); here the gradients are handed over and
// MPS is told "no update" (nil).
- (MPSCNNConvolutionWeightsAndBiasesState*)updateWithCommandBuffer:(id<MTLCommandBuffer>)commandBuffer
                                                     gradientState:(MPSCNNConvolutionGradientState*)gradientState
                                                       sourceState:
                                                           (MPSCNNConvolutionWeightsAndBiasesState*)sourceState {
  if (_gradientSink) _gradientSink(commandBuffer, gradientState);
  return nil;
}
@end

// ------------------------------------------------------------------------------------------------
// The normalization data sources keep their own float arrays: MPS asks for mutable pointers.
namespace {
struct NormArrays {
  std::vector<float> gamma, beta, mean, variance;
  float epsilon = 0;
  NSUInteger channels = 0;
  void set(const mpsnn::NormalizationParams& p) {
    gamma = p.gamma;
    beta = p.beta;
    mean = p.mean;
    variance = p.variance;
    epsilon = p.epsilon;
    channels = NSUInteger(p.channels);
  }
};
float* data_or_null(std::vector<float>& v) { return v.empty() ? nullptr : v.data(); }
}  // namespace

@implementation MpsnnBatchNormalizationDataSource {
  std::shared_ptr<const mpsnn::NormalizationParams> _params;
  NormArrays _arrays;
  NSString* _label;
}
@synthesize gradientSink = _gradientSink;

- (instancetype)initWithParams:(std::shared_ptr<const mpsnn::NormalizationParams>)params label:(NSString*)label {
  if ((self = [super init])) {
    _label = label;
    [self setParams:std::move(params)];
  }
  return self;
}
- (void)setParams:(std::shared_ptr<const mpsnn::NormalizationParams>)params {
  _params = std::move(params);
  _arrays.set(*_params);
}
- (NSUInteger)numberOfFeatureChannels {
  return _arrays.channels;
}
- (float*)gamma {
  return data_or_null(_arrays.gamma);
}
- (float*)beta {
  return data_or_null(_arrays.beta);
}
- (float*)mean {
  return data_or_null(_arrays.mean);
}
- (float*)variance {
  return data_or_null(_arrays.variance);
}
- (float)epsilon {
  return _arrays.epsilon;
}
- (BOOL)load {
  return YES;
}
- (void)purge {
}
- (NSString*)label {
  return _label;
}
- (id)copyWithZone:(NSZone*)zone {
  MpsnnBatchNormalizationDataSource* c = [[MpsnnBatchNormalizationDataSource alloc] initWithParams:_params
                                                                                            label:_label];
  c.gradientSink = _gradientSink;
  return c;
}
// As for convolutions: the state goes to mpsnn's training update, MPS updates nothing itself.
- (MPSCNNNormalizationGammaAndBetaState*)updateGammaAndBetaWithCommandBuffer:(id<MTLCommandBuffer>)commandBuffer
                                                      batchNormalizationState:
                                                          (MPSCNNBatchNormalizationState*)batchNormalizationState {
  if (_gradientSink) _gradientSink(commandBuffer, batchNormalizationState);
  return nil;
}
- (MPSCNNNormalizationMeanAndVarianceState*)updateMeanAndVarianceWithCommandBuffer:(id<MTLCommandBuffer>)commandBuffer
                                                            batchNormalizationState:
                                                                (MPSCNNBatchNormalizationState*)batchNormalizationState {
  return nil;
}
@end

@implementation MpsnnInstanceNormalizationDataSource {
  std::shared_ptr<const mpsnn::NormalizationParams> _params;
  NormArrays _arrays;
  NSString* _label;
}
@synthesize gradientSink = _gradientSink;

- (instancetype)initWithParams:(std::shared_ptr<const mpsnn::NormalizationParams>)params label:(NSString*)label {
  if ((self = [super init])) {
    _label = label;
    [self setParams:std::move(params)];
  }
  return self;
}
- (void)setParams:(std::shared_ptr<const mpsnn::NormalizationParams>)params {
  _params = std::move(params);
  _arrays.set(*_params);
}
- (NSUInteger)numberOfFeatureChannels {
  return _arrays.channels;
}
- (float*)gamma {
  return data_or_null(_arrays.gamma);
}
- (float*)beta {
  return data_or_null(_arrays.beta);
}
- (float)epsilon {
  return _arrays.epsilon;
}
- (BOOL)load {
  return YES;
}
- (void)purge {
}
- (NSString*)label {
  return _label;
}
- (id)copyWithZone:(NSZone*)zone {
  MpsnnInstanceNormalizationDataSource* c = [[MpsnnInstanceNormalizationDataSource alloc] initWithParams:_params
                                                                                                  label:_label];
  c.gradientSink = _gradientSink;
  return c;
}
- (MPSCNNNormalizationGammaAndBetaState*)
    updateGammaAndBetaWithCommandBuffer:(id<MTLCommandBuffer>)commandBuffer
        instanceNormalizationStateBatch:(MPSCNNInstanceNormalizationGradientStateBatch*)stateBatch {
  if (_gradientSink)
    for (MPSCNNInstanceNormalizationGradientState* s in stateBatch) _gradientSink(commandBuffer, s);
  return nil;
}
@end

// ------------------------------------------------------------------------------------------------
@implementation MpsnnPadding {
  NSUInteger _method;
  NSString* _label;
  mpsnn::NodeGeometry _geometry;
  mpsnn::ImageShape _result;
  BOOL _resolved;  // geometry and result known (a policy read back from an archive has neither)
}

- (instancetype)initWithMethod:(NSUInteger)method
                         label:(NSString*)label
                      geometry:(const mpsnn::NodeGeometry*)geometry
                        result:(const mpsnn::ImageShape*)result {
  if ((self = [super init])) {
    _method = method;
    _label = label;
    _resolved = geometry != nullptr && result != nullptr;
    if (geometry) _geometry = *geometry;
    if (result) _result = *result;
  }
  return self;
}
+ (BOOL)supportsSecureCoding {
  return YES;
}
- (void)encodeWithCoder:(NSCoder*)coder {
  [coder encodeInt64:int64_t(_method) forKey:@"paddingMethod"];
  if (_label) [coder encodeObject:_label forKey:@"label"];
}
- (instancetype)initWithCoder:(NSCoder*)coder {
  return [self initWithMethod:NSUInteger([coder decodeInt64ForKey:@"paddingMethod"])
                        label:[coder decodeObjectOfClass:[NSString class] forKey:@"label"]
                     geometry:nullptr
                       result:nullptr];
}
- (MPSNNPaddingMethod)paddingMethod {
  return MPSNNPaddingMethod(_method);
}
- (NSString*)label {
  return _label ? _label : @"mpsnn padding";
}

// Only reached for methods with the custom bit. The kernel gets the offset, edge mode and channel
// window mpsnn's shape rules resolved (nodes.md §1.2: offset = floor(extent / 2) - pad_before).
- (MPSImageDescriptor*)destinationImageDescriptorForSourceImages:(NSArray<MPSImage*>*)sourceImages
                                                    sourceStates:(NSArray<MPSState*>*)sourceStates
                                                       forKernel:(MPSKernel*)kernel
                                             suggestedDescriptor:(MPSImageDescriptor*)inDescriptor {
  if (!_resolved) return inDescriptor;
  if ([kernel isKindOfClass:[MPSCNNKernel class]]) {
    MPSCNNKernel* k = (MPSCNNKernel*)kernel;
    MPSOffset offset;
    offset.x = NSInteger(_geometry.x.extent() / 2 - _geometry.x.pad_before);
    offset.y = NSInteger(_geometry.y.extent() / 2 - _geometry.y.pad_before);
    offset.z = 0;
    k.offset = offset;
    k.edgeMode = MPSImageEdgeMode(int(_geometry.edge_mode));
    k.sourceFeatureChannelOffset = NSUInteger(_geometry.source_channel_offset);
    if (_geometry.source_channel_count > 0) k.sourceFeatureChannelMaxCount = NSUInteger(_geometry.source_channel_count);
  }
  MPSImageDescriptor* d = [inDescriptor copy];
  d.width = NSUInteger(_result.w);
  d.height = NSUInteger(_result.h);
  d.featureChannels = NSUInteger(_result.c);
  return d;
}
@end

// ------------------------------------------------------------------------------------------------
@implementation MpsnnHandle {
  mpsnn::HandlePtr _handle;
  NSString* _label;
}
- (instancetype)initWithHandle:(mpsnn::HandlePtr)handle {
  if ((self = [super init])) {
    _handle = std::move(handle);
    // Read now, on the thread that builds the graph: MPS may ask during an encode, which must not
    // call back into Python.
    _label = _handle ? mpsnn::metal::ns_string(_handle->label()) : nil;
  }
  return self;
}
- (mpsnn::HandlePtr)handle {
  return _handle;
}
- (NSString*)label {
  return _label;
}
+ (BOOL)supportsSecureCoding {
  return YES;
}
- (void)encodeWithCoder:(NSCoder*)coder {
  if (_label) [coder encodeObject:_label forKey:@"label"];
}
- (instancetype)initWithCoder:(NSCoder*)coder {
  if ((self = [super init])) _label = [coder decodeObjectOfClass:[NSString class] forKey:@"label"];
  return self;
}
@end

// ------------------------------------------------------------------------------------------------
@implementation MpsnnTransformProvider {
  mpsnn::ScaleTransform _transform;
}
- (instancetype)initWithTransform:(mpsnn::ScaleTransform)transform {
  if ((self = [super init])) _transform = transform;
  return self;
}
- (MPSScaleTransform)transformForSourceImage:(MPSImage*)image handle:(id<MPSHandle>)handle {
  MPSScaleTransform t;
  t.scaleX = _transform.scale_x;
  t.scaleY = _transform.scale_y;
  t.translateX = _transform.translate_x;
  t.translateY = _transform.translate_y;
  return t;
}
+ (BOOL)supportsSecureCoding {
  return YES;
}
- (void)encodeWithCoder:(NSCoder*)coder {
  [coder encodeDouble:_transform.scale_x forKey:@"scaleX"];
  [coder encodeDouble:_transform.scale_y forKey:@"scaleY"];
  [coder encodeDouble:_transform.translate_x forKey:@"translateX"];
  [coder encodeDouble:_transform.translate_y forKey:@"translateY"];
}
- (instancetype)initWithCoder:(NSCoder*)coder {
  mpsnn::ScaleTransform t;
  t.scale_x = [coder decodeDoubleForKey:@"scaleX"];
  t.scale_y = [coder decodeDoubleForKey:@"scaleY"];
  t.translate_x = [coder decodeDoubleForKey:@"translateX"];
  t.translate_y = [coder decodeDoubleForKey:@"translateY"];
  return [self initWithTransform:t];
}
@end

// ------------------------------------------------------------------------------------------------
@implementation MpsnnImageAllocator {
  BOOL _temporary;
}
- (instancetype)initTemporary:(BOOL)temporary {
  if ((self = [super init])) _temporary = temporary;
  return self;
}
- (MPSImage*)imageForCommandBuffer:(id<MTLCommandBuffer>)cmdBuf
                   imageDescriptor:(MPSImageDescriptor*)descriptor
                            kernel:(MPSKernel*)kernel {
  if (_temporary) return [MPSTemporaryImage temporaryImageWithCommandBuffer:cmdBuf imageDescriptor:descriptor];
  return [[MPSImage alloc] initWithDevice:cmdBuf.device imageDescriptor:descriptor];
}
+ (BOOL)supportsSecureCoding {
  return YES;
}
- (void)encodeWithCoder:(NSCoder*)coder {
  [coder encodeBool:_temporary forKey:@"temporary"];
}
- (instancetype)initWithCoder:(NSCoder*)coder {
  return [self initTemporary:[coder decodeBoolForKey:@"temporary"]];
}
@end
