#pragma once
// The interface between compiled plans and backends. A factory runs once per plan, when it is
// compiled, with the device the plan runs on; `run` only binds memory and enqueues work on the
// stream it is given, and never allocates. Per-run objects live in a KernelState owned by the
// execution context, so one plan runs from many threads at once.
//
// A step has several inputs and outputs over typed values (TensorRef): inputs are the source
// images in schema order, then the buffers of the source states; outputs are the result image,
// then the buffers of the result states the graph consumes (a forward kernel fills its state only
// when it is asked to, i.e. when the spec lists those outputs), then what the step writes into a
// source state of the graph (a loss's loss image, bound to the caller's MPSCNNLossLabels).
// Parameters are graph-owned (graph/params.h): a kernel gets their current version per run and
// refreshes whatever layout it derived from them (VersionCache) when the version changes, so
// reloading parameters never recompiles a plan.
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/device.h"
#include "core/tensor.h"
#include "graph/attrs.h"
#include "graph/data_source.h"
#include "graph/node.h"
#include "graph/op_kind.h"
#include "graph/optimizer.h"
#include "graph/params.h"
#include "graph/schema.h"

namespace mpsnn {

// An operation fused behind a kernel's main computation, applied in order. A `sum` adds the
// step's last input (the residual addend) to the result.
struct PostOp {
  enum class Kind { neuron, sum, clamp };
  Kind kind = Kind::neuron;
  NeuronDescriptor neuron;  // neuron
  float lo = 0, hi = 0;     // clamp
};

struct KernelSpec {
  const FilterNode* node = nullptr;  // null for internal steps
  OpKind kind = OpKind::None;
  const Attrs* attrs = nullptr;      // the node's attributes frozen with the graph
  std::vector<TensorDesc> inputs;    // images, then source-state buffers
  std::vector<TensorDesc> outputs;   // result image, then result-state buffers
  NodeGeometry geom;
  std::vector<PostOp> post_ops;
  // Parameter values at compile time (descriptor, shapes) and their version, which a kernel's
  // VersionCache starts from; runs see the current version through KernelArgs::params.
  NodeParams params;
  uint64_t params_version = 0;
  bool batch_statistics = false;     // batch normalization computes the batch's own mean/variance
  // False when nothing reads outputs[0]: the kernel may leave it unwritten (a parameter gradient
  // whose data gradient nobody consumes).
  bool result_needed = true;
  std::string context;               // "[convolution 'conv1']"

  template <typename T>
  const T& attrs_as() const { return std::get<T>(*attrs); }
  const ImageShape& input(size_t i) const { return inputs[i].shape; }
  const ImageShape& output() const { return outputs[0].shape; }
};

class KernelState {
 public:
  virtual ~KernelState() = default;
};

struct KernelArgs {
  const TensorRef* inputs = nullptr;
  int num_inputs = 0;
  const TensorRef* outputs = nullptr;
  int num_outputs = 0;
  const ParamSnapshot* params = nullptr;  // per KernelSpec::param_slots
  int num_params = 0;
  void* scratch = nullptr;  // scratch_bytes() bytes of device memory, private to this run
  Stream* stream = nullptr;
};

class Kernel {
 public:
  virtual ~Kernel() = default;
  virtual size_t scratch_bytes() const { return 0; }
  virtual std::unique_ptr<KernelState> make_state() const { return nullptr; }
  // The input whose memory the result image may reuse (elementwise kernels: 0; a fused residual
  // sum: the addend), or -1.
  virtual int in_place_input() const { return -1; }
  virtual void run(const KernelArgs& args, KernelState* state) const = 0;
};

using KernelFactory = std::unique_ptr<Kernel> (*)(const KernelSpec& spec, Device& device);

struct GraphDef;
struct PlanKey;
class ParamStore;

// What a graph-level backend gets (Metal: Apple's MPSNNGraph schedules, fuses and allocates
// itself, so the whole graph is one kernel). The kernel's inputs and outputs are exactly
// Plan::execute's, in that order; its parameters are every parameter slot of the graph, in
// `param_nodes` order, so a run sees their current versions as any kernel does.
struct GraphKernelSpec {
  const GraphDef* def = nullptr;
  const PlanKey* key = nullptr;
  const ParamStore* params = nullptr;  // the graph's parameters (values at compile time)
  std::vector<TensorDesc> inputs;   // source images (the caller's formats), then source-state inputs
  std::vector<TensorDesc> outputs;  // GraphDef::outputs, the exported result-state buffers, state outputs
  std::vector<size_t> result_state_buffers;     // per GraphDef::result_states: its buffers in `outputs`
  std::vector<const FilterNode*> param_nodes;  // the filter of each parameter slot
  // Every image node's shape as the shape rules give it (a backend's own scheduling must agree).
  std::vector<std::pair<const ImageNode*, ImageShape>> shapes;
  // Every filter's resolved geometry (padding policies and transform providers already asked:
  // a graph-level backend answers MPS's callbacks from these, never calling user code in a run).
  std::vector<std::pair<const FilterNode*, NodeGeometry>> geometry;
  ChannelFormat graph_format = ChannelFormat::float32;
  // CompileOptions::poison_temporaries: fill every output with all-ones bits (NaN in float16 and
  // float32) before each run, so an output the backend leaves unwritten shows up.
  bool poison_outputs = false;
};
using GraphKernelFactory = std::unique_ptr<Kernel> (*)(const GraphKernelSpec& spec, Device& device);

// What a kernel derived from a parameter version (reordered weights, prepacked bits), refreshed
// once when a run brings a newer version. Reloads happen only while no run is in flight
// (NNGraph::reload_from_data_sources checks), so the refresh never races with a reader.
class VersionCache {
 public:
  template <typename F>
  void ensure(uint64_t version, F&& refresh) const {
    if (version_.load(std::memory_order_acquire) == version) return;
    std::lock_guard<std::mutex> lock(mutex_);
    if (version_.load(std::memory_order_relaxed) == version) return;
    refresh();
    version_.store(version, std::memory_order_release);
  }
  void set(uint64_t version) const { version_.store(version, std::memory_order_release); }

 private:
  mutable std::mutex mutex_;
  mutable std::atomic<uint64_t> version_{~uint64_t(0)};
};

// Filled by one backend's register function; consulted by the compiler.
class KernelRegistry {
 public:
  explicit KernelRegistry(std::string backend) : backend_(std::move(backend)) {}
  void add(OpKind kind, KernelFactory factory) { factories_[size_t(kind)] = factory; }
  KernelFactory find(OpKind kind) const { return factories_[size_t(kind)]; }
  const std::string& backend() const { return backend_; }

  // Fusion abilities of the backend's convolution / fully connected kernels.
  bool (*can_fuse_neuron)(const NeuronDescriptor&) = nullptr;
  bool can_fuse_sum = false;

  // The storage format of a plan's image values (activations) for a graph `format`
  // (graph.md §2.4: the storage format of intermediate images). Null: float32 whatever the format
  // (the CPU backend computes in float32; a float16 graph format there only sets the format of
  // the results). CUDA stores float16 activations for float16 graphs. State buffers and
  // parameters are not affected.
  ChannelFormat (*activation_format)(ChannelFormat graph_format) = nullptr;
  ChannelFormat activations_for(ChannelFormat graph_format) const {
    return activation_format ? activation_format(graph_format) : ChannelFormat::float32;
  }

  // The optimizers' element loop (graph/optimizer.h); null: no optimizer on this backend.
  OptimizerUpdateFn optimizer_update = nullptr;

  // A graph-level backend (GraphKernelSpec): set, it compiles every plan into this one kernel
  // and no per-kind factory is consulted.
  GraphKernelFactory graph_kernel = nullptr;

 private:
  std::string backend_;
  KernelFactory factories_[kNumOpKinds] = {};
};

}  // namespace mpsnn
