#pragma once
// The Metal backend's registry entries (plain C++): a graph-level backend, so the registry gets
// the one graph kernel (graph.h) instead of a kernel per kind, MPS's optimizers for the
// optimizers' element loop, and float16 activations for float16 graphs.
#include "graph/kernel.h"

namespace mpsnn::metal {

void register_metal_kernels(KernelRegistry& r);

}  // namespace mpsnn::metal
