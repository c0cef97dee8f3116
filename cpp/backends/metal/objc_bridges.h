// Small Objective-C classes that forward mpsnn's C++ objects to the MPS protocols the graph nodes
// take (data sources, padding policies, handles, transform providers, image allocators).
// Objective-C: included only by the .mm files of backends/metal, never by plain C++ code.
#pragma once
#ifndef __OBJC__
#error "objc_bridges.h declares Objective-C classes; include it only from the .mm files of backends/metal"
#endif

#import <Foundation/Foundation.h>
#import <Metal/Metal.h>
#import <MetalPerformanceShaders/MetalPerformanceShaders.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "graph/data_source.h"
#include "graph/node.h"
#include "graph/schema.h"

NS_ASSUME_NONNULL_BEGIN

// Called when MPS hands a trainable node's gradient state to its data source during an encode
// (updateWithCommandBuffer:... with updateDeviceGPU): the graph kernel copies the parameter
// gradients into the mpsnn state the data source's own update then reads (graph.mm).
using MpsnnGradientSink = std::function<void(id<MTLCommandBuffer>, MPSState*)>;

// MPSCNNConvolutionDataSource over a graph's parameter block (weights OHWI float32 or binary bits,
// biases, descriptor). MPS reads it when the MPSNNGraph is made and on reloadFromDataSources.
@interface MpsnnConvolutionDataSource : NSObject <MPSCNNConvolutionDataSource>
- (instancetype)initWithParams:(std::shared_ptr<const mpsnn::ConvolutionParams>)params
                                binary:(BOOL)binary
                                 label:(nullable NSString*)label;
// New values of the same structure (a training update, reload_from_data_sources).
- (void)setParams:(std::shared_ptr<const mpsnn::ConvolutionParams>)params;
@property(nonatomic) MpsnnGradientSink gradientSink;
@end

// MPSCNNBatchNormalizationDataSource over gamma, beta, mean, variance and epsilon.
@interface MpsnnBatchNormalizationDataSource : NSObject <MPSCNNBatchNormalizationDataSource>
- (instancetype)initWithParams:(std::shared_ptr<const mpsnn::NormalizationParams>)params
                                 label:(nullable NSString*)label;
- (void)setParams:(std::shared_ptr<const mpsnn::NormalizationParams>)params;
@property(nonatomic) MpsnnGradientSink gradientSink;
@end

// MPSCNNInstanceNormalizationDataSource over gamma, beta and epsilon.
@interface MpsnnInstanceNormalizationDataSource : NSObject <MPSCNNInstanceNormalizationDataSource>
- (instancetype)initWithParams:(std::shared_ptr<const mpsnn::NormalizationParams>)params
                                 label:(nullable NSString*)label;
- (void)setParams:(std::shared_ptr<const mpsnn::NormalizationParams>)params;
@property(nonatomic) MpsnnGradientSink gradientSink;
@end

// MPSNNPadding answering from the geometry mpsnn's shape rules resolved when the plan was
// compiled (a custom policy's Python hook ran then, not during an encode): the padding method,
// the kernel offset, edge mode and channel window, and the result size.
@interface MpsnnPadding : NSObject <MPSNNPadding>
- (instancetype)initWithMethod:(NSUInteger)method
                                 label:(nullable NSString*)label
                              geometry:(const mpsnn::NodeGeometry* _Nullable)geometry
                                result:(const mpsnn::ImageShape* _Nullable)result;
@end

// MPSHandle carrying an mpsnn handle (or none): the graph's handle lists are matched back to
// mpsnn's nodes through these objects' identity.
@interface MpsnnHandle : NSObject <MPSHandle>
- (instancetype)initWithHandle:(mpsnn::HandlePtr)handle;
@property(nonatomic, readonly) mpsnn::HandlePtr handle;
@end

// MPSImageTransformProvider giving the transform a scale node's provider returned at compile time.
@interface MpsnnTransformProvider : NSObject <MPSImageTransformProvider>
- (instancetype)initWithTransform:(mpsnn::ScaleTransform)transform;
@end

// MPSImageAllocator for an image node: MPSTemporaryImage for mpsnn's temporary default allocator,
// MPSImage otherwise (an exported or result image outlives the command buffer's temporaries).
@interface MpsnnImageAllocator : NSObject <MPSImageAllocator>
- (instancetype)initTemporary:(BOOL)temporary;
@end

namespace mpsnn::metal {
// MPSCNNConvolutionDescriptor (or its depthwise / sub-pixel subclass) for a descriptor.
MPSCNNConvolutionDescriptor* convolution_descriptor(const ConvolutionDescriptor& d);
// MPSNNNeuronDescriptor for a neuron (PReLU's slopes as its data).
MPSNNNeuronDescriptor* neuron_descriptor(const NeuronDescriptor& n);
NSString* _Nullable ns_string(const std::optional<std::string>& s);
}  // namespace mpsnn::metal

NS_ASSUME_NONNULL_END
