// Registration of the Metal backend, and the optimizers' element loop as MPS's own optimizer
// kernels (MPSNNOptimizerStochasticGradientDescent, MPSNNOptimizerRMSProp, MPSNNOptimizerAdam)
// encoded on the command buffer's MTLCommandBuffer.
#import <Foundation/Foundation.h>
#import <Metal/Metal.h>
#import <MetalPerformanceShaders/MetalPerformanceShaders.h>

#include "backends/metal/register.h"

#include "backends/metal/device.h"
#include "backends/metal/graph.h"
#include "core/errors.h"
#include "graph/optimizer.h"

namespace mpsnn::metal {

namespace {

// An MPSVector over `count` float32 values of Metal memory (the optimizers' buffers are vectors of
// states and parameters, all made by the Metal allocator).
MPSVector* vector_over(const float* p, int64_t count, const char* what) {
  if (p == nullptr) return nil;
  size_t offset = 0;
  void* buffer = buffer_containing(p, &offset);
  MPSNN_CHECK(buffer != nullptr, BackendError, "[MPSNNOptimizer] ", what,
              " is not in Metal memory; optimizers on a metal device take vectors of that device");
  MPSVectorDescriptor* d = [MPSVectorDescriptor vectorDescriptorWithLength:NSUInteger(count)
                                                                  dataType:MPSDataTypeFloat32];
  return [[MPSVector alloc] initWithBuffer:(__bridge id<MTLBuffer>)buffer offset:NSUInteger(offset) descriptor:d];
}

MPSNNOptimizerDescriptor* optimizer_descriptor(const OptimizerDescriptor& d) {
  return [[MPSNNOptimizerDescriptor alloc] initWithLearningRate:d.learning_rate
                                                gradientRescale:d.gradient_rescale
                                          applyGradientClipping:d.apply_gradient_clipping
                                                gradientClipMax:d.gradient_clip_max
                                                gradientClipMin:d.gradient_clip_min
                                             regularizationType:MPSNNRegularizationType(int(d.regularization_type))
                                            regularizationScale:d.regularization_scale];
}

// One update (graph/optimizer.h): a fresh MPS optimizer kernel with the step's settings, encoded on
// the stream's open command buffer. Values and result may be the same vector (MPS allows it).
void optimizer_update(const OptimizerStep& s, const OptimizerBuffers& b, Stream& stream) {
  auto* ms = dynamic_cast<MetalStream*>(&stream);
  MPSNN_CHECK(ms != nullptr, BackendError, "[MPSNNOptimizer] a metal optimizer ran on another device's stream");
  @autoreleasepool {
    id<MTLCommandBuffer> cb = (__bridge id<MTLCommandBuffer>)ms->command_buffer();
    id<MTLDevice> device = cb.device;
    MPSVector* gradient = vector_over(b.gradient, b.count, "the gradient");
    MPSVector* values = vector_over(b.values, b.count, "the values");
    MPSVector* result = vector_over(b.result, b.count, "the result");
    MPSVector* s0 = vector_over(b.state0, b.count, "a state vector");
    MPSVector* s1 = vector_over(b.state1, b.count, "a state vector");
    MPSVector* s2 = vector_over(b.state2, b.count, "a state vector");
    MPSNNOptimizerDescriptor* desc = optimizer_descriptor(s.desc);
    switch (s.rule) {
      case OptimizerRule::sgd: {
        MPSNNOptimizerStochasticGradientDescent* o =
            [[MPSNNOptimizerStochasticGradientDescent alloc] initWithDevice:device
                                                              momentumScale:s.momentum_scale
                                                        useNesterovMomentum:s.nesterov
                                                        optimizerDescriptor:desc];
        [o encodeToCommandBuffer:cb
             inputGradientVector:gradient
               inputValuesVector:values
             inputMomentumVector:s0
              resultValuesVector:result];
        break;
      }
      case OptimizerRule::rmsprop: {
        MPSNNOptimizerRMSProp* o = [[MPSNNOptimizerRMSProp alloc] initWithDevice:device
                                                                           decay:double(s.decay)
                                                                         epsilon:s.epsilon
                                                             optimizerDescriptor:desc];
        [o encodeToCommandBuffer:cb
                 inputGradientVector:gradient
                   inputValuesVector:values
             inputSumOfSquaresVector:s0
                  resultValuesVector:result];
        break;
      }
      case OptimizerRule::adam: {
        // MPS derives lr_t from learningRate and its own time step, "the number of times update has
        // occurred" before this one, and advances it: t - 1 gives the step mpsnn fixed.
        MPSNNOptimizerAdam* o = [[MPSNNOptimizerAdam alloc] initWithDevice:device
                                                                     beta1:double(s.beta1)
                                                                     beta2:double(s.beta2)
                                                                   epsilon:s.epsilon
                                                                  timeStep:NSUInteger(s.time_step > 0 ? s.time_step - 1 : 0)
                                                       optimizerDescriptor:desc];
        if (s2)
          [o encodeToCommandBuffer:cb
                 inputGradientVector:gradient
                   inputValuesVector:values
                 inputMomentumVector:s0
                 inputVelocityVector:s1
               maximumVelocityVector:s2
                  resultValuesVector:result];
        else
          [o encodeToCommandBuffer:cb
               inputGradientVector:gradient
                 inputValuesVector:values
               inputMomentumVector:s0
               inputVelocityVector:s1
                resultValuesVector:result];
        break;
      }
    }
  }
  // The task after an update (NNGraph's parameter load) reads the result on the CPU: done when this
  // returns, as on the host stream.
  ms->synchronize();
}

}  // namespace

void register_metal_kernels(KernelRegistry& r) {
  r.graph_kernel = make_graph_kernel;
  r.optimizer_update = optimizer_update;
  // MPS computes float16 graphs in float16 images (with float32 accumulation where it chooses).
  r.activation_format = [](ChannelFormat graph_format) {
    return graph_format == ChannelFormat::float16 ? ChannelFormat::float16 : ChannelFormat::float32;
  };
}

}  // namespace mpsnn::metal
