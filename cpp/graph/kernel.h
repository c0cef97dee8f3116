#pragma once
// The interface between compiled plans and backends. A factory runs once per plan, when it is
// compiled (weights are reordered then); `run` only binds buffers and launches, and never
// allocates. Per-run objects live in a KernelState owned by the execution context, so one
// plan runs from many threads at once.
#include <memory>
#include <string>
#include <vector>

#include "core/tensor_view.h"
#include "graph/attrs.h"
#include "graph/data_source.h"
#include "graph/node.h"
#include "graph/op_kind.h"
#include "graph/schema.h"

namespace mpsnn {

// An operation fused behind a kernel's main computation, applied in order.
struct PostOp {
  enum class Kind { neuron, sum, clamp };
  Kind kind = Kind::neuron;
  NeuronDescriptor neuron;  // neuron
  float lo = 0, hi = 0;     // clamp
};

struct KernelSpec {
  const FilterNode* node = nullptr;
  OpKind kind;
  std::vector<ImageShape> inputs;
  ImageShape output;
  NodeGeometry geom;
  std::vector<PostOp> post_ops;
  std::shared_ptr<const ConvolutionParams> conv;       // possibly with batch norm folded in
  std::shared_ptr<const NormalizationParams> norm;
  bool batch_statistics = false;  // batch normalization computes the batch's own mean/variance
  std::string context;  // "[convolution 'conv1']"
};

class KernelState {
 public:
  virtual ~KernelState() = default;
};

struct KernelArgs {
  const TensorView* inputs = nullptr;
  int num_inputs = 0;
  TensorView output;
  void* scratch = nullptr;  // scratch_bytes() bytes, private to this run
};

class Kernel {
 public:
  virtual ~Kernel() = default;
  virtual size_t scratch_bytes() const { return 0; }
  virtual std::unique_ptr<KernelState> make_state() const { return nullptr; }
  // Whether the output may share memory with input 0 (elementwise kernels).
  virtual bool in_place_ok() const { return false; }
  // Whether input views may have pixel_stride != channels.
  virtual bool accepts_strided_inputs() const { return false; }
  virtual void run(const KernelArgs& args, KernelState* state) const = 0;
};

using KernelFactory = std::unique_ptr<Kernel> (*)(const KernelSpec&);

// Filled by one backend's register function; consulted by the compiler.
class KernelRegistry {
 public:
  explicit KernelRegistry(std::string backend) : backend_(std::move(backend)) {}
  void add(OpKind kind, KernelFactory factory) { factories_[size_t(kind)] = factory; }
  KernelFactory find(OpKind kind) const { return factories_[size_t(kind)]; }
  const std::string& backend() const { return backend_; }

  // Which post-ops the backend can fuse into convolution / fully connected kernels.
  bool (*can_fuse_neuron)(const NeuronDescriptor&) = nullptr;
  bool can_fuse_sum = false;

 private:
  std::string backend_;
  KernelFactory factories_[kNumOpKinds] = {};
};

}  // namespace mpsnn
