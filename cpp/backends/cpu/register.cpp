#include "backends/cpu/register.h"

#include "backends/cpu/device.h"
#include "backends/cpu/dnnl_utils.h"

namespace mpsnn::cpu {

void register_cpu_kernels(KernelRegistry& r) {
  r.add(OpKind::Convolution, make_convolution);
  r.add(OpKind::BinaryConvolution, make_binary_convolution);
  r.add(OpKind::Pooling, make_pooling);
  r.add(OpKind::Neuron, make_neuron);
  r.add(OpKind::SoftMax, make_softmax);
  r.add(OpKind::Arithmetic, make_arithmetic);
  r.add(OpKind::Concatenation, make_concatenation);
  r.add(OpKind::BatchNormalization, make_batch_normalization);
  r.add(OpKind::InstanceNormalization, make_instance_normalization);
  r.add(OpKind::Normalization, make_normalization);
  r.add(OpKind::Upsampling, make_upsampling);
  r.add(OpKind::Scale, make_scale);
  r.add(OpKind::PoolingGradient, make_pooling_gradient);
  r.add(OpKind::NeuronGradient, make_neuron_gradient);
  r.add(OpKind::ConvolutionGradient, make_convolution_gradient);
  r.add(OpKind::BatchNormalizationGradient, make_batch_normalization_gradient);
  r.add(OpKind::InstanceNormalizationGradient, make_instance_normalization_gradient);
  r.add(OpKind::Loss, make_loss);
  r.add(OpKind::YOLOLoss, make_yolo_loss);
  r.add(OpKind::Dropout, make_dropout);  // training only: inference dropout is aliased away
  r.add(OpKind::ArithmeticGradient, make_arithmetic_gradient);
  r.add(OpKind::ConcatenationGradient, make_concatenation_gradient);
  r.add(OpKind::SoftMaxGradient, make_softmax_gradient);
  r.add(OpKind::NormalizationGradient, make_normalization_gradient);
  r.add(OpKind::UpsamplingGradient, make_upsampling_gradient);
  r.add(OpKind::DropoutGradient, make_dropout_gradient);
  r.add(OpKind::Convert, make_convert);
  r.add(OpKind::Fill, make_fill);
  r.can_fuse_neuron = dnnl_can_fuse_neuron;
  r.can_fuse_sum = true;
  r.optimizer_update = optimizer_update;
}

int device_count() { return 1; }

DevicePtr make_device(int) { return std::make_shared<CpuDevice>(); }

}  // namespace mpsnn::cpu
