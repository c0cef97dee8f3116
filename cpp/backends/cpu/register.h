#pragma once
// Kernel factories of the CPU backend, one per node kind (kernels/<family>.cpp), and its device.
#include <memory>

#include "backends/cpu/isa.h"
#include "core/device.h"
#include "graph/kernel.h"

namespace mpsnn::cpu {

// Compiled once: they drive oneDNN only (their loops are oneDNN's, which picks its own ISA).
std::unique_ptr<Kernel> make_convolution(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_convolution_gradient(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_neuron(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_softmax(const KernelSpec& spec, Device& device);

int device_count();
DevicePtr make_device(int index);

// Fills `registry` with every CPU kernel: the ones above and those of the chosen ISA (isa.h).
void register_cpu_kernels(KernelRegistry& registry);

}  // namespace mpsnn::cpu

// Compiled once per ISA (isa.h), into mpsnn::cpu::<ISA>.
namespace MPSNN_ISA_NAMESPACE {

std::unique_ptr<Kernel> make_binary_convolution(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_pooling(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_arithmetic(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_concatenation(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_batch_normalization(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_instance_normalization(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_normalization(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_upsampling(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_scale(const KernelSpec& spec, Device& device);

std::unique_ptr<Kernel> make_pooling_gradient(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_neuron_gradient(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_batch_normalization_gradient(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_instance_normalization_gradient(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_loss(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_yolo_loss(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_arithmetic_gradient(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_concatenation_gradient(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_softmax_gradient(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_normalization_gradient(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_upsampling_gradient(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_dropout(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_dropout_gradient(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_convert(const KernelSpec& spec, Device& device);
std::unique_ptr<Kernel> make_fill(const KernelSpec& spec, Device& device);

// The optimizers' update loop (kernels/optimizer.cpp).
void optimizer_update(const OptimizerStep& step, const OptimizerBuffers& buffers, Stream& stream);

}  // namespace MPSNN_ISA_NAMESPACE
