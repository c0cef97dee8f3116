#include "backends/cuda/register.h"

namespace mpsnn::cuda {

void register_cuda_kernels(KernelRegistry& r) {
  r.add(OpKind::Convolution, make_convolution);
  r.add(OpKind::Neuron, make_neuron);
  r.add(OpKind::Arithmetic, make_arithmetic);
  r.add(OpKind::Pooling, make_pooling);
  r.add(OpKind::SoftMax, make_softmax);
  r.add(OpKind::Convert, make_convert);
  r.add(OpKind::Fill, make_fill);
  r.can_fuse_neuron = convolution_can_fuse_neuron;
  r.can_fuse_sum = true;
  // Float16 and bfloat16 graphs keep activations in their format (every kernel above takes
  // float16, bfloat16 and float32 values, computing in float32); other formats compute on float32
  // activations.
  r.activation_format = [](ChannelFormat graph_format) {
    return graph_format == ChannelFormat::float16 || graph_format == ChannelFormat::bfloat16 ? graph_format
                                                                                             : ChannelFormat::float32;
  };
}

}  // namespace mpsnn::cuda
