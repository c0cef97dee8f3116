#include "graph/plan.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>

#include "core/errors.h"

namespace mpsnn {

size_t PlanKeyHash::operator()(const PlanKey& k) const {
  size_t h = size_t(k.graph_format) * 31 + (k.fuse ? 7 : 0) + (k.poison ? 13 : 0);
  auto mix = [&](int64_t v) { h ^= std::hash<int64_t>()(v) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2); };
  for (size_t i = 0; i < k.shapes.size(); ++i) {
    mix(k.shapes[i].n);
    mix(k.shapes[i].h);
    mix(k.shapes[i].w);
    mix(k.shapes[i].c);
    mix(int64_t(k.formats[i]));
    mix(k.dense[i] ? 1 : 0);
  }
  return h;
}

// Per-run memory and kernel states; reused across runs through the plan's pool.
class ExecContext {
 public:
  AlignedBuffer arena;
  std::vector<std::unique_ptr<KernelState>> states;
  std::vector<TensorView> views;
  std::vector<TensorView> step_inputs;
};

Plan::Plan() = default;
Plan::~Plan() = default;

std::unique_ptr<ExecContext> Plan::acquire() const {
  {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    if (!pool_.empty()) {
      auto ctx = std::move(pool_.back());
      pool_.pop_back();
      return ctx;
    }
  }
  auto ctx = std::make_unique<ExecContext>();
  ctx->arena = AlignedBuffer(arena_bytes_);
  for (const auto& s : steps_) ctx->states.push_back(s.kernel->make_state());
  ctx->views.resize(values_.size());
  ctx->step_inputs.resize(size_t(max_inputs_));
  return ctx;
}

void Plan::release(std::unique_ptr<ExecContext> ctx) const {
  std::lock_guard<std::mutex> lock(pool_mutex_);
  pool_.push_back(std::move(ctx));
}

namespace {

// Copies between a caller image of any format / pixel stride and a dense float32 value.
void copy_boundary(const RawImage& img, float* value, bool into_value) {
  const int64_t pixels = img.shape.n * img.shape.h * img.shape.w;
  const int64_t c = img.shape.c;
  const size_t e = element_size(img.format);
  auto* base = static_cast<char*>(img.data);
  if (img.pixel_stride == c) {
    if (into_value) convert_to_float(img.format, base, value, size_t(pixels * c));
    else convert_from_float(img.format, value, base, size_t(pixels * c));
    return;
  }
  for (int64_t p = 0; p < pixels; ++p) {
    char* px = base + size_t(p * img.pixel_stride) * e;
    if (into_value) convert_to_float(img.format, px, value + p * c, size_t(c));
    else convert_from_float(img.format, value + p * c, px, size_t(c));
  }
}

}  // namespace

void Plan::execute(const std::vector<RawImage>& inputs, const std::vector<RawImage>& outputs) const {
  auto ctx = acquire();
  struct Release {
    const Plan* plan;
    std::unique_ptr<ExecContext>& ctx;
    ~Release() { plan->release(std::move(ctx)); }
  } release_on_exit{this, ctx};

  if (poison_) {
    float* a = reinterpret_cast<float*>(ctx->arena.data());
    const size_t n = arena_bytes_ / sizeof(float);
    for (size_t i = 0; i < n; ++i) a[i] = std::numeric_limits<float>::quiet_NaN();
    // Outputs are allocated without a zero fill (Image::allocate_for_overwrite): all bits set (NaN
    // in float formats) shows any element a plan fails to write.
    for (const RawImage& o : outputs) {
      if (!o.data) continue;
      const size_t e = element_size(o.format);
      const int64_t pixels = o.shape.n * o.shape.h * o.shape.w;
      for (int64_t p = 0; p < pixels; ++p)
        std::memset(static_cast<char*>(o.data) + size_t(p * o.pixel_stride) * e, 0xFF, size_t(o.shape.c) * e);
    }
  }
  for (size_t v = 0; v < values_.size(); ++v) {
    const ValueSlot& slot = values_[v];
    TensorView& view = ctx->views[v];
    view.shape = slot.shape;
    view.pixel_stride = slot.shape.c;
    switch (slot.kind) {
      case ValueSlot::Kind::arena:
        view.data = reinterpret_cast<float*>(ctx->arena.data() + slot.offset);
        break;
      case ValueSlot::Kind::input:
        view.data = static_cast<float*>(inputs[size_t(slot.index)].data);
        break;
      case ValueSlot::Kind::output:
        view.data = static_cast<float*>(outputs[size_t(slot.index)].data);
        break;
    }
  }
  for (const auto& c : input_copies_) copy_boundary(inputs[size_t(c.image)], ctx->views[size_t(c.value)].data, true);
  void* scratch = ctx->arena.data() + scratch_offset_;
  for (size_t i = 0; i < steps_.size(); ++i) {
    const PlanStep& s = steps_[i];
    for (size_t k = 0; k < s.inputs.size(); ++k) ctx->step_inputs[k] = ctx->views[size_t(s.inputs[k])];
    const TensorView& out = ctx->views[size_t(s.output)];
    if (s.sum_input >= 0) {
      const TensorView& addend = ctx->views[size_t(s.sum_input)];
      if (addend.data != out.data) std::memcpy(out.data, addend.data, size_t(out.shape.numel()) * sizeof(float));
    }
    KernelArgs args;
    args.inputs = ctx->step_inputs.data();
    args.num_inputs = int(s.inputs.size());
    args.output = out;
    args.scratch = scratch;
    s.kernel->run(args, ctx->states[i].get());
  }
  for (const auto& c : output_copies_) {
    if (!outputs[size_t(c.image)].data) continue;
    copy_boundary(outputs[size_t(c.image)], ctx->views[size_t(c.value)].data, false);
  }
}

std::string Plan::describe() const {
  std::ostringstream os;
  os << "plan: " << steps_.size() << " steps, temporary memory " << arena_bytes_ << " bytes\n";
  auto where = [&](int v) {
    const ValueSlot& s = values_[size_t(v)];
    std::ostringstream w;
    w << "%" << v << " " << s.shape.n << "x" << s.shape.h << "x" << s.shape.w << "x" << s.shape.c;
    if (s.kind == ValueSlot::Kind::input) w << " (input " << s.index << ")";
    else if (s.kind == ValueSlot::Kind::output) w << " (output " << s.index << ")";
    else w << " @" << s.offset;
    return w.str();
  };
  for (const auto& s : steps_) {
    os << "  " << s.context << ": ";
    for (size_t k = 0; k < s.inputs.size(); ++k) os << (k ? ", " : "") << where(s.inputs[k]);
    if (s.sum_input >= 0) os << " + sum " << where(s.sum_input);
    os << " -> " << where(s.output) << "\n";
  }
  return os.str();
}

}  // namespace mpsnn
