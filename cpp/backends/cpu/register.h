#pragma once
// Kernel factories of the CPU backend, one per node kind (kernels/<family>.cpp).
#include <memory>

#include "graph/kernel.h"

namespace mpsnn::cpu {

std::unique_ptr<Kernel> make_convolution(const KernelSpec& spec);
std::unique_ptr<Kernel> make_binary_convolution(const KernelSpec& spec);
std::unique_ptr<Kernel> make_pooling(const KernelSpec& spec);
std::unique_ptr<Kernel> make_neuron(const KernelSpec& spec);
std::unique_ptr<Kernel> make_softmax(const KernelSpec& spec);
std::unique_ptr<Kernel> make_arithmetic(const KernelSpec& spec);
std::unique_ptr<Kernel> make_concatenation(const KernelSpec& spec);
std::unique_ptr<Kernel> make_batch_normalization(const KernelSpec& spec);
std::unique_ptr<Kernel> make_instance_normalization(const KernelSpec& spec);
std::unique_ptr<Kernel> make_normalization(const KernelSpec& spec);
std::unique_ptr<Kernel> make_dropout(const KernelSpec& spec);
std::unique_ptr<Kernel> make_upsampling(const KernelSpec& spec);
std::unique_ptr<Kernel> make_scale(const KernelSpec& spec);

// Fills `registry` with every CPU kernel.
void register_cpu_kernels(KernelRegistry& registry);

}  // namespace mpsnn::cpu
