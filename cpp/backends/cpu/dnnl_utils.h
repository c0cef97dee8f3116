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

// One axis of a window in oneDNN terms. oneDNN needs pad_before >= 0; pixels a negative pad
// skips are cropped from the source instead, and a negative pad_after is raised to the
// smallest value that keeps the result size.
struct DnnlAxis {
  int64_t crop_before = 0;  // source pixels skipped at the start
  int64_t source = 0;       // source extent oneDNN sees
  int64_t pad_l = 0, pad_r = 0;
};
DnnlAxis dnnl_axis(int64_t source, int64_t result, const WindowAxis& w);

// The source as oneDNN sees it after cropping: dims, strides of the full image, element offset.
struct SourceWindow {
  memory::desc md;
  int64_t offset = 0;  // elements from the view's data pointer
  DnnlAxis y, x;
};
SourceWindow source_window(const ImageShape& src, const ImageShape& dst, const WindowAxis& y, const WindowAxis& x);

// A neuron as a chain of oneDNN eltwise operations, or nothing if oneDNN cannot express it
// exactly (soft sign, PReLU, power, exponential / logarithm with unusual bases).
struct EltwiseOp {
  dnnl::algorithm alg;
  float alpha = 0, beta = 0;
};
std::optional<std::vector<EltwiseOp>> eltwise_chain(const NeuronDescriptor& n);
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

// Copies a strided/cropped view into dense memory and back (for fallbacks).
void copy_view(const TensorView& src, const TensorView& dst);

}  // namespace mpsnn::cpu
