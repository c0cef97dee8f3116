#include "backends/cpu/dnnl_utils.h"
#include "backends/cpu/isa.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>


namespace mpsnn::cpu {

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

memory::desc nhwc_desc(const ImageShape& s, int64_t ps) {
  if (ps < 0 || ps == s.c) return memory::desc({s.n, s.c, s.h, s.w}, dt::f32, tag::nhwc);
  return memory::desc({s.n, s.c, s.h, s.w}, dt::f32, memory::dims{s.h * s.w * ps, 1, s.w * ps, ps});
}

memory::desc nhwc_desc(const TensorView& v) { return nhwc_desc(v.shape, v.pixel_stride); }

SourceWindow source_window(const ImageShape& src, const ImageShape& dst, const WindowAxis& y, const WindowAxis& x) {
  SourceWindow w;
  w.y = library_axis(src.h, dst.h, y);
  w.x = library_axis(src.w, dst.w, x);
  const int64_t ps = src.c;
  w.offset = w.y.crop_before * src.w * ps + w.x.crop_before * ps;
  if (w.y.source == src.h && w.x.source == src.w) {
    w.md = nhwc_desc(src);
  } else {
    w.md = memory::desc({src.n, src.c, w.y.source, w.x.source}, dt::f32,
                        memory::dims{src.h * src.w * ps, 1, src.w * ps, ps});
  }
  return w;
}

std::optional<std::vector<EltwiseOp>> eltwise_chain(const NeuronDescriptor& n, EltwiseUse use) {
  using A = dnnl::algorithm;
  const bool exact_nan = use == EltwiseUse::node;
  std::vector<EltwiseOp> c;
  switch (n.type) {
    case NeuronType::none: return c;
    case NeuronType::relu:
      if (n.a == 0.0f && exact_nan) return std::nullopt;  // oneDNN's a = 0 path is max(u, 0)
      c.push_back({A::eltwise_relu, n.a, 0});
      return c;
    case NeuronType::linear: c.push_back({A::eltwise_linear, n.a, n.b}); return c;
    case NeuronType::sigmoid: c.push_back({A::eltwise_logistic, 0, 0}); return c;
    case NeuronType::hard_sigmoid:
      if (exact_nan) return std::nullopt;
      c.push_back({A::eltwise_hardsigmoid, n.a, n.b});
      return c;
    case NeuronType::tanh:
      if (n.b != 1.0f) c.push_back({A::eltwise_linear, n.b, 0});
      c.push_back({A::eltwise_tanh, 0, 0});
      if (n.a != 1.0f) c.push_back({A::eltwise_linear, n.a, 0});
      return c;
    case NeuronType::absolute: c.push_back({A::eltwise_abs, 0, 0}); return c;
    case NeuronType::elu: c.push_back({A::eltwise_elu, n.a, 0}); return c;
    case NeuronType::relu_n:
      if (exact_nan) return std::nullopt;
      c.push_back({A::eltwise_relu, n.a, 0});
      c.push_back({A::eltwise_clip, -INFINITY, n.b});  // min(r, b): -inf stays -inf
      return c;
    default: return std::nullopt;  // soft plus, exponential, logarithm, soft sign, PReLU, power
  }
}

bool dnnl_can_fuse_neuron(const NeuronDescriptor& n) { return eltwise_chain(n, EltwiseUse::post_op).has_value(); }

PostOpPlan plan_post_ops(const std::vector<PostOp>& post_ops, const std::string& context) {
  PostOpPlan p;
  for (const auto& op : post_ops) {
    switch (op.kind) {
      case PostOp::Kind::neuron: {
        auto chain = p.tail.empty() ? eltwise_chain(op.neuron, EltwiseUse::post_op) : std::nullopt;
        if (!chain) {
          p.tail.push_back(op);
          break;
        }
        for (const auto& e : *chain) p.ops.append_eltwise(e.alg, e.alpha, e.beta);
        break;
      }
      case PostOp::Kind::sum:
        MPSNN_CHECK(p.tail.empty(), BackendError, context,
                    " internal error: a sum post-op follows a neuron oneDNN cannot fuse");
        p.ops.append_sum(1.0f);
        break;
      case PostOp::Kind::clamp:
        if (p.tail.empty()) p.ops.append_eltwise(dnnl::algorithm::eltwise_clip, op.lo, op.hi);
        else p.tail.push_back(op);
        break;
    }
  }
  return p;
}

void apply_neuron(const NeuronDescriptor& n, const TensorView& src, const TensorView& dst) {
  isa_kernels().neuron(n, src, dst);  // the loops are compiled per ISA (isa.h)
}

void apply_tail(const std::vector<PostOp>& tail, const TensorView& out) {
  for (const auto& op : tail) {
    if (op.kind == PostOp::Kind::neuron) {
      apply_neuron(op.neuron, out, out);
    } else if (op.kind == PostOp::Kind::clamp) {
      isa_kernels().clamp(out, op.lo, op.hi);
    }
  }
}

dnnl::primitive_attr scratchpad_attr() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

PrimitiveRunner::PrimitiveRunner(const dnnl::primitive_desc& pd, size_t scratch_offset)
    : primitive_(pd),
      src_md_(pd.src_desc()),
      dst_md_(pd.dst_desc()),
      scratchpad_md_(pd.scratchpad_desc()),
      offset_(scratch_offset) {}

std::unique_ptr<PrimitiveState> PrimitiveRunner::make_state() const {
  auto s = std::make_unique<PrimitiveState>();
  s->args[DNNL_ARG_SRC] = memory(src_md_, engine(), DNNL_MEMORY_NONE);
  s->args[DNNL_ARG_DST] = memory(dst_md_, engine(), DNNL_MEMORY_NONE);
  s->args[DNNL_ARG_SCRATCHPAD] = memory(scratchpad_md_, engine(), DNNL_MEMORY_NONE);
  return s;
}

void PrimitiveRunner::run(KernelState* state, const float* src, float* dst, void* scratch) const {
  auto* s = static_cast<PrimitiveState*>(state);
  s->args[DNNL_ARG_SRC].set_data_handle(const_cast<float*>(src));
  s->args[DNNL_ARG_DST].set_data_handle(dst);
  s->args[DNNL_ARG_SCRATCHPAD].set_data_handle(static_cast<char*>(scratch) + offset_);
  primitive_.execute(s->stream, s->args);
  s->stream.wait();
}

void copy_view(const TensorView& src, const TensorView& dst) {
  NeuronDescriptor identity;
  identity.type = NeuronType::none;
  isa_kernels().neuron(identity, src, dst);
}

}  // namespace mpsnn::cpu
