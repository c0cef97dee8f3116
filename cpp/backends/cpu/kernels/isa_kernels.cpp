// This ISA's table (isa.h): compiled once per ISA with the other per-ISA kernel sources.
#include "backends/cpu/isa.h"
#include "backends/cpu/kernels/own_kernels.h"
#include "backends/cpu/register.h"

#ifndef MPSNN_ISA
#error "kernels/isa_kernels.cpp is compiled once per ISA, with MPSNN_ISA set (CMakeLists.txt)"
#endif

#define MPSNN_ISA_STR2(x) #x
#define MPSNN_ISA_STR(x) MPSNN_ISA_STR2(x)

namespace MPSNN_ISA_NAMESPACE {
namespace {

void register_kernels(KernelRegistry& r) {
  r.add(OpKind::BinaryConvolution, make_binary_convolution);
  r.add(OpKind::Pooling, make_pooling);
  r.add(OpKind::Arithmetic, make_arithmetic);
  r.add(OpKind::Concatenation, make_concatenation);
  r.add(OpKind::BatchNormalization, make_batch_normalization);
  r.add(OpKind::InstanceNormalization, make_instance_normalization);
  r.add(OpKind::Normalization, make_normalization);
  r.add(OpKind::Upsampling, make_upsampling);
  r.add(OpKind::Scale, make_scale);
  r.add(OpKind::PoolingGradient, make_pooling_gradient);
  r.add(OpKind::NeuronGradient, make_neuron_gradient);
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
  r.optimizer_update = optimizer_update;
}

}  // namespace

const IsaKernels& isa_table() {
  static const IsaKernels table{MPSNN_ISA_STR(MPSNN_ISA), register_kernels, own::neuron, own::clamp};
  return table;
}

}  // namespace MPSNN_ISA_NAMESPACE
