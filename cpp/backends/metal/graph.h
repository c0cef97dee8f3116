#pragma once
// The Metal backend's one kernel: the compiled mpsnn graph mapped node for node onto Apple's
// MPSNN node classes and run by a real MPSNNGraph (graph.mm). Plain C++.
#include <memory>

#include "core/device.h"
#include "graph/kernel.h"

namespace mpsnn::metal {

// KernelRegistry::graph_kernel of the Metal backend. Throws UnsupportedError listing every node
// MPS has no class for (graph.mm's table says which), GraphError when MPS refuses the graph.
std::unique_ptr<Kernel> make_graph_kernel(const GraphKernelSpec& spec, Device& device);

}  // namespace mpsnn::metal
