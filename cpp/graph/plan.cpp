#include "graph/plan.h"

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
  for (const auto* list : {&k.state_inputs, &k.state_outputs})
    for (const auto& descs : *list) {
      mix(int64_t(descs.size()));
      for (const auto& d : descs) {
        mix(int64_t(d.dtype));
        mix(d.shape.n);
        mix(d.shape.h);
        mix(d.shape.w);
        mix(d.shape.c);
      }
    }
  return h;
}

// Per-run memory, kernel states and a stream; reused across runs through the plan's pool.
class ExecContext {
 public:
  std::shared_ptr<Storage> arena;
  std::unique_ptr<Stream> stream;  // for runs that bring none (NNGraph::run)
  std::vector<std::unique_ptr<KernelState>> states;
  std::vector<TensorRef> refs;          // per value
  std::vector<TensorRef> in, out;       // one step's arguments
  std::vector<ParamSnapshot> params;    // per Plan::params_, taken at the start of a run
  // Replay (Plan::records()): the bindings of recent runs, with their recording once made.
  struct Recorded {
    std::vector<uint64_t> binding;
    std::unique_ptr<StreamRecording> recording;
    bool unrecordable = false;  // recording failed once: always run plainly
    uint64_t last_use = 0;
  };
  std::vector<Recorded> recorded;
  std::vector<uint64_t> binding;  // this run's
  uint64_t runs = 0;
};

Plan::Plan(DevicePtr device) : device_(std::move(device)) {}
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
  ctx->arena = device_->allocator().allocate(arena_bytes_, false);
  ctx->stream = device_->make_stream();
  for (const auto& s : steps_) ctx->states.push_back(s.kernel->make_state());
  ctx->refs.resize(values_.size());
  ctx->in.resize(size_t(max_refs_));
  ctx->out.resize(size_t(max_refs_));
  ctx->params.resize(params_.size());
  char* base = static_cast<char*>(ctx->arena->data());
  for (size_t v = 0; v < values_.size(); ++v) {
    const ValueSlot& slot = values_[v];
    if (slot.kind == ValueSlot::Kind::arena)
      ctx->refs[v] = dense_ref(base + slot.offset, slot.desc.dtype, slot.desc.shape);
  }
  return ctx;
}

void Plan::release(std::unique_ptr<ExecContext> ctx) const {
  std::lock_guard<std::mutex> lock(pool_mutex_);
  pool_.push_back(std::move(ctx));
}

void Plan::run_steps(ExecContext& c, Stream& stream) const {
  void* scratch = static_cast<char*>(c.arena->data()) + scratch_offset_;
  for (size_t i = 0; i < steps_.size(); ++i) {
    const PlanStep& s = steps_[i];
    bool skip = false;  // a Convert into an output the caller does not want
    for (int k = 0; k < s.num_inputs; ++k) c.in[size_t(k)] = c.refs[size_t(step_values_[size_t(s.first_input + k)])];
    for (int k = 0; k < s.num_outputs; ++k) {
      c.out[size_t(k)] = c.refs[size_t(step_values_[size_t(s.first_output + k)])];
      skip = skip || !c.out[size_t(k)].data;
    }
    if (skip && !s.whole_graph) continue;
    KernelArgs args;
    args.inputs = c.in.data();
    args.num_inputs = s.num_inputs;
    args.outputs = c.out.data();
    args.num_outputs = s.num_outputs;
    args.params = c.params.data() + s.first_param;
    args.num_params = s.num_params;
    args.scratch = scratch;
    args.stream = &stream;
    s.kernel->run(args, c.states[i].get());
  }
}

void Plan::execute(const std::vector<TensorRef>& inputs, const std::vector<TensorRef>& outputs, Stream* given) const {
  std::unique_ptr<ExecContext> ctx = acquire();
  Stream& stream = given ? *given : *ctx->stream;
  for (size_t v = 0; v < values_.size(); ++v) {
    const ValueSlot& slot = values_[v];
    if (slot.kind == ValueSlot::Kind::input) ctx->refs[v] = inputs[size_t(slot.index)];
    else if (slot.kind == ValueSlot::Kind::output) ctx->refs[v] = outputs[size_t(slot.index)];
  }
  for (size_t p = 0; p < params_.size(); ++p) ctx->params[p] = params_[p]->snapshot();
  try {
    ExecContext::Recorded* entry = nullptr;
    if (records_) {
      // This run's binding: what a recording has baked in (the steps' memory, parameter versions).
      std::vector<uint64_t>& b = ctx->binding;
      b.clear();
      for (size_t v = 0; v < values_.size(); ++v) {
        if (values_[v].kind == ValueSlot::Kind::arena) continue;
        b.push_back(uint64_t(reinterpret_cast<uintptr_t>(ctx->refs[v].data)));
        b.push_back(uint64_t(ctx->refs[v].pixel_stride));
      }
      for (const auto& p : ctx->params) b.push_back(p.version);
      ++ctx->runs;
      for (auto& r : ctx->recorded)
        if (r.binding == b) entry = &r;
      if (!entry) {
        // First run with this binding: plain (it also does whatever kernels do once, e.g. a
        // parameter refresh); the next run with it records.
        if (ctx->recorded.size() >= kMaxRecordings) {
          auto oldest = ctx->recorded.begin();
          for (auto it = ctx->recorded.begin(); it != ctx->recorded.end(); ++it)
            if (it->last_use < oldest->last_use) oldest = it;
          ctx->recorded.erase(oldest);
        }
        ctx->recorded.push_back({b, nullptr, false, ctx->runs});
      } else {
        entry->last_use = ctx->runs;
      }
    }
    if (entry && entry->recording) {
      entry->recording->replay(stream);
      replayed_runs_.fetch_add(1, std::memory_order_relaxed);
    } else if (entry && !entry->unrecordable && stream.begin_recording()) {
      try {
        run_steps(*ctx, stream);
      } catch (...) {
        stream.end_recording();  // nothing ran: run plainly below, which reports a real error
        entry->unrecordable = true;
      }
      if (!entry->unrecordable) entry->recording = stream.end_recording();
      if (entry->recording) {
        entry->recording->replay(stream);
        recorded_runs_.fetch_add(1, std::memory_order_relaxed);
      } else {
        entry->unrecordable = true;
        run_steps(*ctx, stream);
      }
    } else {
      run_steps(*ctx, stream);
    }
  } catch (...) {
    stream.synchronize();  // work already enqueued may still read the context
    release(std::move(ctx));
    throw;
  }
  if (!given) {
    stream.synchronize();
    release(std::move(ctx));
    return;
  }
  // The context's memory is free again once the device has finished this run.
  ExecContext* raw = ctx.release();
  stream.when_done([self = shared_from_this(), raw] { self->release(std::unique_ptr<ExecContext>(raw)); });
}

const ImageShape* Plan::shape_of(const ImageNode* node) const {
  for (const auto& [n, shape] : image_shapes_)
    if (n == node) return &shape;
  return nullptr;
}

std::string Plan::describe() const {
  std::ostringstream os;
  os << "plan: " << steps_.size() << " steps, temporary memory " << arena_bytes_ << " bytes\n";
  if (records_)
    os << "  replay: on (" << recorded_runs_.load() << " runs recorded, " << replayed_runs_.load() << " replayed)\n";
  auto where = [&](int v) {
    const ValueSlot& s = values_[size_t(v)];
    std::ostringstream w;
    w << "%" << v << " " << s.desc.shape.n << "x" << s.desc.shape.h << "x" << s.desc.shape.w << "x" << s.desc.shape.c;
    if (s.desc.dtype != DType::f32) w << " " << dtype_name(s.desc.dtype);
    if (s.kind == ValueSlot::Kind::input) w << " (input " << s.index << ")";
    else if (s.kind == ValueSlot::Kind::output) w << " (output " << s.index << ")";
    else w << " @" << s.offset;
    return w.str();
  };
  for (const auto& s : steps_) {
    os << "  " << s.context << ": ";
    for (int k = 0; k < s.num_inputs; ++k) os << (k ? ", " : "") << where(step_values_[size_t(s.first_input + k)]);
    os << " -> ";
    for (int k = 0; k < s.num_outputs; ++k) os << (k ? ", " : "") << where(step_values_[size_t(s.first_output + k)]);
    if (!s.fused.empty()) os << " [fused " << s.fused << "]";
    os << "\n";
  }
  return os.str();
}

}  // namespace mpsnn
