// The graph-level backend seam (KernelRegistry::graph_kernel, GraphKernelSpec: what the Metal
// backend plugs into; tests/test_graph_kernel_cpp.py builds this with cpp/core and cpp/graph, no
// backend). A registry with no per-kind kernel and a whole-graph kernel of our own, which walks
// the GraphDef itself (linear neurons only) as MPSNNGraph would: the plan must bind exactly
// Plan::execute's inputs and outputs in their order, give every image node's shape and every
// filter's geometry, pass the poison flag, leave a result nobody needs unbound, and compile one plan
// per input size. Prints "all cases passed" or the failed checks.
#include <cstdio>
#include <memory>
#include <unordered_map>
#include <vector>

#include "test_support.h"
#include "graph/graph_def.h"
#include "graph/kernel.h"
#include "graph/nn_graph.h"

using namespace mpsnn;

namespace {
using test::check;
using test::failures;

// What the factory saw, for the checks.
struct Seen {
  size_t inputs = 0, outputs = 0, shapes = 0, geometry = 0, filters = 0, def_outputs = 0;
  bool poison = false;
  int factories = 0;
} seen;

class WholeGraphKernel final : public Kernel {
 public:
  explicit WholeGraphKernel(const GraphKernelSpec& spec) : def_(*spec.def) {}
  void run(const KernelArgs& a, KernelState*) const override {
    std::unordered_map<const ImageNode*, std::vector<float>> values;
    std::unordered_map<const ImageNode*, ImageShape> shapes;
    for (size_t i = 0; i < def_.source_images.size(); ++i) {
      const TensorRef& x = a.inputs[i];
      values[def_.source_images[i].get()].assign(x.as<float>(), x.as<float>() + x.shape.numel());
      shapes[def_.source_images[i].get()] = x.shape;
    }
    for (const auto& f : def_.filters) {
      const auto& n = std::get<NeuronAttrs>(def_.frozen_of(*f).attrs).neuron;
      std::vector<float> y = values.at(f->sources()[0].get());
      for (float& v : y) v = n.a * v + n.b;
      values[f->result_image().get()] = y;
    }
    for (size_t j = 0; j < def_.outputs.size(); ++j) {
      const TensorRef& out = a.outputs[j];
      if (!out.data || !def_.outputs[j]) continue;
      const auto& v = values.at(def_.outputs[j].get());
      for (size_t k = 0; k < v.size(); ++k) out.as<float>()[k] = v[k];
    }
  }

 private:
  const GraphDef& def_;
};

std::unique_ptr<Kernel> make_whole_graph(const GraphKernelSpec& spec, Device&) {
  ++seen.factories;
  seen.inputs = spec.inputs.size();
  seen.outputs = spec.outputs.size();
  seen.shapes = spec.shapes.size();
  seen.geometry = spec.geometry.size();
  seen.filters = spec.def->filters.size();
  seen.def_outputs = spec.def->outputs.size();
  seen.poison = spec.poison_outputs;
  return std::make_unique<WholeGraphKernel>(spec);
}

FilterNodePtr linear(const ImageNodePtr& src, float a, float b) {
  return std::make_shared<FilterNode>(OpKind::Neuron, NeuronAttrs{make_neuron(NeuronType::linear, a, b)},
                                      std::vector<ImageNodePtr>{src});
}
}  // namespace

int main() {
  DevicePtr device = std::make_shared<test::HostDevice>();
  KernelRegistry registry("graph-level");
  registry.graph_kernel = make_whole_graph;
  auto src = std::make_shared<ImageNode>();
  auto first = linear(src, 2.0f, 1.0f);                    // y1 = 2x + 1
  auto second = linear(first->result_image(), 3.0f, 0.0f);  // y2 = 3 y1
  // Two results: y2 (output 0), then y1 (an intermediate of the run).
  NNGraph graph(device, {second->result_image(), first->result_image()}, {true, true}, &registry);
  for (int64_t size : {3, 5, 3}) {
    ImageShape s{2, size, size + 1, 3};
    std::vector<float> x(size_t(s.numel()));
    for (size_t k = 0; k < x.size(); ++k) x[k] = float(k % 7) - 3.0f;
    auto out = graph.run({Image::wrap(device, ChannelFormat::float32, s, x.data(), nullptr)});
    check(out.size() == 2 && out[0] && out[1], "both results come back");
    if (out.size() != 2 || !out[0] || !out[1]) continue;
    check(out[0]->shape() == s && out[1]->shape() == s, "results have the source's shape");
    const float* y2 = static_cast<const float*>(out[0]->data());
    const float* y1 = static_cast<const float*>(out[1]->data());
    bool ok = true;
    for (size_t k = 0; k < x.size(); ++k) ok = ok && y1[k] == 2 * x[k] + 1 && y2[k] == 3 * (2 * x[k] + 1);
    check(ok, "the whole-graph kernel's values reach the results in GraphDef::outputs order");
  }
  check(graph.num_plans() == 2, "one plan per input size");
  check(seen.factories == 2, "the graph kernel is made once per plan");
  check(seen.inputs == 1, "one input: the source image");
  check(seen.outputs == seen.def_outputs && seen.outputs == 2, "outputs: exactly GraphDef::outputs");
  check(seen.shapes == 3, "every image node's shape");
  check(seen.geometry == seen.filters && seen.filters == 2, "every filter's geometry");
  check(!seen.poison, "no poison unless asked");

  // The first result not needed: its binding is null, the second still comes back; poison reaches
  // the kernel as poison_outputs.
  NNGraph partial(device, {second->result_image(), first->result_image()}, {false, true}, &registry);
  CompileOptions o = partial.options();
  o.poison_temporaries = true;
  partial.set_options(o);
  ImageShape s{1, 2, 2, 4};
  std::vector<float> x(size_t(s.numel()), 1.0f);
  auto out = partial.run({Image::wrap(device, ChannelFormat::float32, s, x.data(), nullptr)});
  check(out.size() == 2 && !out[0] && out[1], "an unneeded result is not produced, the intermediate is");
  if (out.size() == 2 && out[1])
    check(static_cast<const float*>(out[1]->data())[0] == 3.0f,
          "y1 = 2x + 1: the whole-graph step runs although one of its outputs is not wanted");
  check(seen.poison, "poison_temporaries reaches a graph-level kernel");
  check(seen.outputs == 2, "an unneeded result keeps its position in the outputs");

  if (failures == 0) std::printf("all cases passed\n");
  return failures == 0 ? 0 : 1;
}
