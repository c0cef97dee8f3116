#pragma once
// Kernel factories of the CUDA backend (kernels/<family>.{cu,cpp}) and its devices. A node kind
// without a factory here raises UnsupportedError naming the node when a plan is compiled.
#include <memory>
#include <string>

#include "core/device.h"
#include "graph/kernel.h"

namespace mpsnn::cuda {

std::unique_ptr<Kernel> make_convolution(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_neuron(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_arithmetic(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_pooling(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_softmax(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_convert(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_fill(const KernelSpec& spec, Device& device);

// The neurons cuDNN's fused convolution graphs apply behind the convolution; others run as a
// separate neuron step.
bool convolution_can_fuse_neuron(const NeuronDescriptor& neuron);

int device_count();
std::string unavailable_reason();
DevicePtr make_device(int index);

// Fills `registry` with every CUDA kernel.
void register_cuda_kernels(KernelRegistry& registry);

}  // namespace mpsnn::cuda
