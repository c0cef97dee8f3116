#include "bindings/common.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "mpsnn native core: Apple's MPSNNGraph node system on oneDNN (CPU).";
  using namespace mpsnn::bindings;
  bind_errors(m);
  bind_enums(m);
  bind_commands(m);
  bind_states(m);
  bind_textures(m);
  bind_images(m);
  bind_nodes(m);
  bind_nodes_convolution(m);
  bind_nodes_pooling(m);
  bind_nodes_neuron(m);
  bind_nodes_arithmetic(m);
  bind_nodes_normalization(m);
  bind_nodes_resample(m);
  bind_nodes_loss(m);
  bind_kernels(m);
  bind_optimizers(m);
  bind_graph(m);
  bind_serialization(m);
}
