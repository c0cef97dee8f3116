#pragma once
// Shared oneDNN plumbing for the CPU kernels: the engine, NHWC memory descriptors, window
// geometry in oneDNN's terms, neuron post-op chains, and a state holding per-run memory objects.
#include <oneapi/dnnl/dnnl.hpp>

#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/errors.h"
#include "core/tensor_view.h"
#include "graph/kernel.h"

namespace mpsnn::cpu {

using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

dnnl::engine& engine();

// Converts a oneDNN failure into a BackendError naming the node.
#define MPSNN_CHECK_DNNL(expr, context)                                                          \
  [&]() -> decltype(auto) {                                                                      \
    try {                                                                                        \
      return (expr);                                                                             \
    } catch (const dnnl::error& e) {                                                             \
      MPSNN_THROW(BackendError, context, " oneDNN failed in ", #expr, ": ", e.what(), " (status ", \
                  int(e.status), ")");                                                           \
    }                                                                                            \
  }()

// Logical NCHW dims over NHWC memory with the given pixel stride (dense when == c).
memory::desc nhwc_desc(const ImageShape& s, int64_t pixel_stride = -1);
memory::desc nhwc_desc(const TensorView& v);


// The source as oneDNN sees it after cropping: dims, strides of the full image, element offset.
struct SourceWindow {
  memory::desc md;
  int64_t offset = 0;  // elements from the view's data pointer
  LibraryAxis y, x;
};
SourceWindow source_window(const ImageShape& src, const ImageShape& dst, const WindowAxis& y, const WindowAxis& x);

// A neuron as a chain of oneDNN eltwise operations, or nothing where our own loop must run it.
// oneDNN's eltwise departs from the nodes.md §6.2 formulas in two known ways:
//  * its max/min-based clamps (ReLU with a = 0, clip, hard sigmoid) return the bound for a NaN
//    input, where the formula propagates NaN;
//  * its exp / log / soft_relu approximations are off by up to ~3e-6 absolute (log near 1) and
//    soft_relu can dip below 0.
// The approximations are never used: soft plus, exponential and logarithm always run in our
// loop. The NaN behaviour depends on the use (chosen definition): a standalone neuron node
// propagates NaN exactly (our loop for the clamping types), while a neuron fused into a
// convolution keeps oneDNN's clamps, because a second pass over every ReLU output would cost
// ResNet-50 about a fifth of its speed. Finite inputs give identical results either way;
// `graph.fusion_enabled = False` gives IEEE NaN propagation everywhere.
enum class EltwiseUse { node, post_op };
struct EltwiseOp {
  dnnl::algorithm alg;
  float alpha = 0, beta = 0;
};
std::optional<std::vector<EltwiseOp>> eltwise_chain(const NeuronDescriptor& n, EltwiseUse use);
// Whether a neuron fused into a convolution runs inside the oneDNN primitive (graph fusion asks).
bool dnnl_can_fuse_neuron(const NeuronDescriptor& n);

// Post-ops split into what oneDNN runs inside the primitive and a tail we apply afterwards
// (elementwise, in place on the output). A sum may only appear in the oneDNN part.
struct PostOpPlan {
  dnnl::post_ops ops;
  std::vector<PostOp> tail;
};
PostOpPlan plan_post_ops(const std::vector<PostOp>& post_ops, const std::string& context);
// Applies neuron / clamp post-ops in place.
void apply_tail(const std::vector<PostOp>& tail, const TensorView& out);

// Applies one neuron elementwise with our own loop (src and dst may alias).
void apply_neuron(const NeuronDescriptor& n, const TensorView& src, const TensorView& dst);

// Per-run objects of a single-primitive kernel: a stream and memory objects whose data
// handles are rebound at every run.
struct PrimitiveState : KernelState {
  dnnl::stream stream;
  std::unordered_map<int, memory> args;
  explicit PrimitiveState() : stream(engine()) {}
};

// One oneDNN primitive reading SRC and writing DST with a user-managed scratchpad: what the
// single-primitive kernels (pooling, softmax, batch norm, LRN, nearest upsampling) share. The
// scratchpad lies `scratch_offset` bytes into the kernel's scratch memory, after the kernel's own.
class PrimitiveRunner {
 public:
  PrimitiveRunner() = default;
  explicit PrimitiveRunner(const dnnl::primitive_desc& pd, size_t scratch_offset = 0);
  size_t scratch_bytes() const { return offset_ + scratchpad_md_.get_size(); }
  // A state with SRC, DST and SCRATCHPAD bound at run time; callers may add constant arguments.
  std::unique_ptr<PrimitiveState> make_state() const;
  void run(KernelState* state, const float* src, float* dst, void* scratch) const;

 private:
  dnnl::primitive primitive_;
  memory::desc src_md_, dst_md_, scratchpad_md_;
  size_t offset_ = 0;
};

// A kernel that is exactly one primitive from input 0 to the output.
class PrimitiveKernel : public Kernel {
 public:
  size_t scratch_bytes() const override { return runner_.scratch_bytes(); }
  std::unique_ptr<KernelState> make_state() const override { return runner_.make_state(); }
  void run(const KernelArgs& a, KernelState* state) const override {
    runner_.run(state, a.inputs[0].as<float>(), a.outputs[0].as<float>(), a.scratch);
  }

 protected:
  PrimitiveRunner runner_;
};

// A primitive attribute with the user-managed scratchpad every kernel uses.
dnnl::primitive_attr scratchpad_attr();

// Copies a strided/cropped view into dense memory and back (for fallbacks).
void copy_view(const TensorView& src, const TensorView& dst);

}  // namespace mpsnn::cpu
