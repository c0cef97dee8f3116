#include "backends/cpu/register.h"

#include "backends/cpu/device.h"
#include "backends/cpu/dnnl_utils.h"

namespace mpsnn::cpu {

void register_cpu_kernels(KernelRegistry& r) {
  // Everything with loops of our own comes from the ISA chosen at run time (isa.h).
  isa_kernels().register_kernels(r);
  r.add(OpKind::Convolution, make_convolution);
  r.add(OpKind::Neuron, make_neuron);
  r.add(OpKind::SoftMax, make_softmax);
  r.add(OpKind::ConvolutionGradient, make_convolution_gradient);
  r.can_fuse_neuron = dnnl_can_fuse_neuron;
  r.can_fuse_sum = true;
}

int device_count() { return 1; }

DevicePtr make_device(int) { return std::make_shared<CpuDevice>(); }

}  // namespace mpsnn::cpu
