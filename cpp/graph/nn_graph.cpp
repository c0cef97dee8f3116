#include "graph/nn_graph.h"

#include <cstring>
#include <iostream>
#include <sstream>

#include "core/errors.h"
#include "core/loss_labels.h"

namespace mpsnn {

NNGraph::NNGraph(DevicePtr device, std::vector<ImageNodePtr> results, std::vector<bool> results_needed,
                 const KernelRegistry* registry)
    : device_(std::move(device)), registry_(registry) {
  MPSNN_CHECK(registry_ != nullptr, UnsupportedError, "[MPSNNGraph] device '", device_->name(),
              "' has no compute backend in this build");
  def_ = GraphDef::discover(results, results_needed);
  params_->load(def_.filters);
  format_.store(device_->default_graph_format());
}

std::shared_ptr<NNGraph> NNGraph::copy(DevicePtr device, const KernelRegistry* registry) const {
  auto g = std::make_shared<NNGraph>(device ? std::move(device) : device_, def_.results, def_.results_needed,
                                     device ? registry : registry_);
  g->set_format(format());
  g->set_destination_image_allocator(destination_image_allocator());
  g->set_options(options());
  g->output_state_is_temporary = output_state_is_temporary;
  g->label = label;
  g->kernel_options = kernel_options;
  return g;
}

namespace {
std::vector<HandlePtr> handles_of(const std::vector<ImageNodePtr>& nodes) {
  std::vector<HandlePtr> out;
  for (const auto& n : nodes) out.push_back(n ? n->handle : nullptr);
  return out;
}
}  // namespace

std::vector<HandlePtr> NNGraph::source_image_handles() const { return handles_of(def_.source_images); }
std::vector<HandlePtr> NNGraph::source_state_handles() const {
  std::vector<HandlePtr> out;
  for (const auto& s : def_.source_states) out.push_back(s->handle);
  return out;
}
std::vector<HandlePtr> NNGraph::intermediate_image_handles() const {
  return handles_of(std::vector<ImageNodePtr>(def_.outputs.begin() + 1, def_.outputs.end()));
}
std::vector<HandlePtr> NNGraph::result_state_handles() const {
  std::vector<HandlePtr> out;
  for (size_t j = 0; j < def_.num_exported_states; ++j) out.push_back(def_.result_states[j]->handle);
  return out;
}
HandlePtr NNGraph::result_handle() const { return def_.results[0]->handle; }

void NNGraph::set_format(ChannelFormat f) {
  MPSNN_CHECK(element_size(f) != 0, DTypeError, "[MPSNNGraph] format '", format_name(f),
              "' cannot store images; expected float32, float16, bfloat16, unorm8 or unorm16");
  format_.store(f);
}

ImageAllocatorPtr NNGraph::destination_image_allocator() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return destination_allocator_;
}
void NNGraph::set_destination_image_allocator(ImageAllocatorPtr a) {
  MPSNN_CHECK(a != nullptr, GraphError, "[MPSNNGraph] destination_image_allocator cannot be None");
  std::lock_guard<std::mutex> lock(mutex_);
  destination_allocator_ = std::move(a);
}
CompileOptions NNGraph::options() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return options_;
}
void NNGraph::set_options(const CompileOptions& o) {
  std::lock_guard<std::mutex> lock(mutex_);
  options_ = o;
}

namespace {
// Marks the graph busy on this thread for the scope (NNGraph::busy_thread_).
struct BusyScope {
  std::atomic<std::thread::id>& busy;
  explicit BusyScope(std::atomic<std::thread::id>& b) : busy(b) { busy.store(std::this_thread::get_id()); }
  ~BusyScope() { busy.store(std::thread::id()); }
};
}  // namespace

void NNGraph::check_not_reentered(const char* what) const {
  if (busy_thread_.load() != std::this_thread::get_id()) return;
  const FilterNode* node = NodeCallbackScope::current();
  MPSNN_THROW(GraphError, node ? node->context() : std::string("[MPSNNGraph]"), " a callback (padding policy, data ",
              "source or transform provider) called MPSNNGraph.", what, " on the graph that is compiling a plan or ",
              "reading data sources for it; a graph cannot be used from its own nodes' callbacks");
}

PlanPtr NNGraph::find_plan(const PlanKey& key, const CompileOptions& opts) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = plans_.find(key);
    if (it != plans_.end()) return it->second;
  }
  PlanPtr plan;
  LogFn log;
  {
    std::lock_guard<std::mutex> compile_lock(compile_mutex_);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = plans_.find(key);
      if (it != plans_.end()) return it->second;
    }
    {
      BusyScope busy(busy_thread_);
      plan = compile_plan(def_, key, *registry_, device_, params_, opts);
    }
    std::lock_guard<std::mutex> lock(mutex_);
    plans_[key] = plan;
    log = log_;
  }
  if (kernel_options & kVerbose) {
    std::ostringstream os;
    os << "[MPSNNGraph" << (label.empty() ? std::string() : " '" + label + "'") << "] compiled a plan (fusion "
       << (opts.fuse ? "on" : "off") << ")\n"
       << plan->describe();
    if (log)
      log(os.str());
    else
      std::cerr << os.str() << std::flush;
  }
  return plan;
}

void NNGraph::set_log(LogFn fn) {
  std::lock_guard<std::mutex> lock(mutex_);
  log_ = std::move(fn);
}

std::string NNGraph::source_state_owner(size_t index) const {
  const StateNode* st = def_.source_states[index].get();
  for (const auto& f : def_.filters)
    for (const auto& s : f->source_states())
      if (s.get() == st) return f->context();
  return "[MPSNNGraph]";
}

void NNGraph::check_source_states(const std::vector<StatePtr>* states, const CommandBuffer* cb, const char* what) const {
  const size_t expected = def_.source_states.size();
  const size_t got = states ? states->size() : 0;
  if (got < expected && def_.source_states[got]->state_class() == StateClass::loss_labels)
    MPSNN_THROW(GraphError, source_state_owner(got), " needs its labels: pass one MPSCNNLossLabels per ",
                "source_state_handles entry in source_states (got ", got, " source state(s); the graph has ", expected,
                ")");
  MPSNN_CHECK(got == expected, GraphError, "[MPSNNGraph.", what, "] got ", got, " source state(s); the graph has ",
              expected, " (see source_state_handles)");
  for (size_t i = 0; i < got; ++i) {
    const StatePtr& s = (*states)[i];
    MPSNN_CHECK(s != nullptr, GraphError, "[MPSNNGraph.", what, "] source state ", i, " is None");
    const StateClass expected_class = def_.source_states[i]->state_class();
    MPSNN_CHECK(expected_class != StateClass::loss_labels || s->state_class() == StateClass::loss_labels,
                GraphError, source_state_owner(i), " input_labels (source state ", i,
                ") is bound to an MPSState that is not an MPSCNNLossLabels; expected the labels of the loss");
    MPSNN_CHECK(s->device() == device_, GraphError, "[MPSNNGraph.", what, "] source state ", i,
                " belongs to another device than the graph");
    if (s->is_temporary()) {
      MPSNN_CHECK(cb != nullptr, TemporaryImageError, "[MPSNNGraph.", what, "] source state ", i,
                  " is temporary; temporary states can only be used with encode() on their command buffer");
      s->check_command_buffer(cb, what);
      s->check_usable(what);
    }
  }
}

NNGraph::Prepared NNGraph::prepare(const std::vector<ImagePtr>& sources, const std::vector<StatePtr>* source_states,
                                   const CommandBufferPtr& cb, const char* what) {
  check_not_reentered(what);
  const size_t expected = def_.source_images.size();
  MPSNN_CHECK(sources.size() == expected, GraphError, "[MPSNNGraph.", what, "] got ", sources.size(),
              " source image(s); the graph has ", expected, " (see source_image_handles)");
  check_source_states(source_states, cb.get(), what);
  Prepared p;
  PlanKey key;
  for (size_t i = 0; i < sources.size(); ++i) {
    const ImagePtr& img = sources[i];
    MPSNN_CHECK(img != nullptr, GraphError, "[MPSNNGraph.", what, "] source image ", i, " is None");
    MPSNN_CHECK(img->device() == device_, GraphError, "[MPSNNGraph.", what, "] source image ", i,
                " belongs to device '", img->device()->name(), "', the graph to device '", device_->name(),
                "' (another device object)");
    if (img->is_temporary()) {
      auto* t = static_cast<TemporaryImage*>(img.get());
      MPSNN_CHECK(cb != nullptr, TemporaryImageError, "[MPSNNGraph.", what, "] source image ", i,
                  " is temporary; temporary images can only be used with encode() on their command buffer");
      t->check_command_buffer(cb.get(), what);
      MPSNN_CHECK(t->read_count() >= 1, TemporaryImageError, "[MPSNNGraph.", what, "] temporary source image ", i,
                  " has read_count 0; its memory was already released");
    }
    key.shapes.push_back(img->shape());
    key.formats.push_back(img->format());
    key.dense.push_back(img->dense());
  }
  std::vector<std::vector<ImagePtr>> state_in, state_out;
  for (size_t i = 0; source_states && i < source_states->size(); ++i) {
    const StatePtr& s = (*source_states)[i];
    state_in.push_back(s->bound_inputs());
    state_out.push_back(s->bound_outputs());
    key.state_inputs.emplace_back();
    key.state_outputs.emplace_back();
    for (const auto& img : state_in.back()) key.state_inputs.back().push_back(img->ref().desc());
    for (const auto& img : state_out.back()) key.state_outputs.back().push_back(img->ref().desc());
  }
  if (!source_states) {
    key.state_inputs.resize(def_.source_states.size());
    key.state_outputs.resize(def_.source_states.size());
  }
  const CompileOptions opts = options();
  key.graph_format = format();
  key.fuse = opts.fuse;
  key.poison = opts.poison_temporaries;
  p.plan = find_plan(key, opts);
  for (const auto& img : sources) {
    p.inputs.push_back(img->ref());
    p.keepalive.push_back(img->storage());
  }
  for (const auto& imgs : state_in)
    for (const auto& img : imgs) {
      p.inputs.push_back(img->ref());
      p.keepalive.push_back(img->storage());
    }
  allocate_outputs(p, cb);
  allocate_states(p, cb);
  for (const auto& imgs : state_out)
    for (const auto& img : imgs) {
      p.outputs.push_back(img->ref());
      p.keepalive.push_back(img->storage());
      p.state_outputs.push_back(img);
    }
  return p;
}

void NNGraph::allocate_outputs(Prepared& p, const CommandBufferPtr& cb) {
  const Plan& plan = *p.plan;
  const auto& shapes = plan.output_shapes();
  const auto& formats = plan.output_formats();
  for (size_t j = 0; j < def_.outputs.size(); ++j) {
    if (!def_.outputs[j]) {
      p.images.push_back(nullptr);
      p.outputs.push_back(TensorRef{});
      continue;
    }
    // The result node's own allocator is ignored (graph.md §2.1); a result also exported is
    // the same image object in both places.
    if (j > 0 && def_.outputs[j] == def_.outputs[0]) {
      p.images.push_back(p.images[0]);
      p.outputs.push_back(p.outputs[0]);
      continue;
    }
    const bool is_result = def_.outputs[j] == def_.results[0];
    ImageDescriptor d;
    d.channel_format = formats[j];
    d.width = shapes[j].w;
    d.height = shapes[j].h;
    d.feature_channels = shapes[j].c;
    d.number_of_images = shapes[j].n;
    ImageAllocatorPtr alloc = is_result ? destination_image_allocator() : def_.outputs[j]->image_allocator;
    ImagePtr img = alloc->allocate(cb, device_, d);
    MPSNN_CHECK(img && img->shape() == shapes[j] && img->format() == formats[j], GraphError,
                "[MPSNNGraph] image allocator returned an image that does not match the descriptor (",
                shapes[j].w, "x", shapes[j].h, "x", shapes[j].c, ", ", shapes[j].n, " images, ",
                format_name(formats[j]), ")");
    MPSNN_CHECK(img->device() == device_, GraphError, "[MPSNNGraph] image allocator returned an image of another device");
    MPSNN_CHECK(img->dense(), GraphError,
                "[MPSNNGraph] image allocator returned a channel slice of a wider image; expected a dense image");
    img->allocate_for_overwrite();  // every plan writes all of its outputs' elements
    p.outputs.push_back(img->ref());
    p.keepalive.push_back(img->storage());
    p.images.push_back(std::move(img));
  }
}

void NNGraph::allocate_states(Prepared& p, const CommandBufferPtr& cb) {
  const auto& layouts = p.plan->result_state_layouts();
  for (size_t j = 0; j < def_.result_states.size(); ++j) {
    std::vector<size_t> sizes;
    for (const auto& d : layouts[j]) sizes.push_back(d.bytes());
    const StateClass cls = def_.result_states[j]->state_class();
    // graph.md §2.5: temporary iff output_state_is_temporary (and there is a command buffer); the
    // states only data sources see are persistent (CPU-style updates read them after completion).
    const bool temporary = output_state_is_temporary && j < def_.num_exported_states;
    StatePtr s = make_state(cls, device_, temporary ? cb : nullptr, sizes);
    s->set_layout(layouts[j]);
    s->origin = p.plan->result_state_origins()[j];
    for (int k = 0; k < s->resource_count(); ++k) {
      BufferPtr b = s->resource(k, true);
      auto storage = b->storage();
      p.outputs.push_back(dense_ref(storage->data(), layouts[j][size_t(k)].dtype, layouts[j][size_t(k)].shape));
      p.keepalive.push_back(std::move(storage));
    }
    p.states.push_back(std::move(s));
  }
}

ImagePtr NNGraph::encode(const CommandBufferPtr& cb, const std::vector<ImagePtr>& sources,
                         const std::vector<StatePtr>* source_states, std::vector<ImagePtr>* intermediates,
                         std::vector<StatePtr>* destination_states) {
  MPSNN_CHECK(cb != nullptr, GraphError, "[MPSNNGraph.encode] command_buffer is None");
  MPSNN_CHECK(cb->device() == device_, GraphError, "[MPSNNGraph.encode] the command buffer belongs to device '",
              cb->device()->name(), "', the graph to device '", device_->name(), "'");
  MPSNN_CHECK(!cb->committed(), GraphError, "[MPSNNGraph.encode] the command buffer was already committed");
  Prepared p = prepare(sources, source_states, cb, "encode");
  std::vector<ImagePtr>& outputs = p.images;
  // A temporary result that is also exported is read twice by the caller.
  for (size_t j = 1; j < outputs.size(); ++j)
    if (outputs[j] && outputs[j] == outputs[0] && outputs[0]->is_temporary())
      static_cast<TemporaryImage*>(outputs[0].get())->set_read_count(2);
  PlanPtr plan = p.plan;
  // The command buffer keeps the plan and every memory the run touches alive until the device
  // has completed it; the pending count drops then too.
  ++*pending_;
  // (Made in place: a copied temporary would decrement once more when it dies.)
  struct Done {
    explicit Done(std::shared_ptr<std::atomic<int>> p) : pending(std::move(p)) {}
    Done(const Done&) = delete;
    Done& operator=(const Done&) = delete;
    ~Done() { --*pending; }
    std::shared_ptr<std::atomic<int>> pending;
  };
  cb->retain(std::make_shared<Done>(pending_));
  cb->retain(plan);
  for (auto& k : p.keepalive) cb->retain(std::move(k));
  if (def_.updates.empty()) {
    cb->encode([plan, in = std::move(p.inputs), out = std::move(p.outputs)](Stream& stream) {
      plan->execute(in, out, &stream);
    }, "MPSNNGraph.encode");
  } else {
    cb->encode([plan, in = std::move(p.inputs), out = std::move(p.outputs), m = run_mutex_](Stream& stream) {
      std::lock_guard<std::mutex> lock(*m);
      plan->execute(in, out, &stream);
      stream.synchronize();  // the next run may change the parameters this one reads
    }, "MPSNNGraph.encode");
    encode_updates(cb, p.states);
  }
  // CPU reads of the results wait for (or refuse before the commit of) this command buffer.
  for (const auto& img : outputs)
    if (img) img->set_producer(cb);
  for (const auto& img : p.state_outputs) img->set_producer(cb);
  for (const auto& img : sources)
    if (img->is_temporary()) static_cast<TemporaryImage*>(img.get())->consume_read(1, "MPSNNGraph.encode");
  if (source_states)
    for (const auto& s : *source_states) s->consume_read(1, "MPSNNGraph.encode");
  if (intermediates)
    for (size_t j = 1; j < outputs.size(); ++j) intermediates->push_back(outputs[j]);
  if (destination_states)
    for (size_t j = 0; j < def_.num_exported_states; ++j) destination_states->push_back(p.states[j]);
  return outputs[0];
}

std::vector<ImagePtr> NNGraph::encode_batch(const CommandBufferPtr& cb, const std::vector<std::vector<ImagePtr>>& sources,
                                            const std::vector<std::vector<StatePtr>>* source_states,
                                            std::vector<std::vector<ImagePtr>>* intermediates,
                                            std::vector<std::vector<StatePtr>>* destination_states) {
  MPSNN_CHECK(!sources.empty(), GraphError, "[MPSNNGraph.encode_batch] no source images");
  const size_t n = sources[0].size();
  MPSNN_CHECK(n > 0, GraphError, "[MPSNNGraph.encode_batch] source batch 0 is empty");
  // Gather each batch into one N-image image; outputs are split back into single-image views.
  std::vector<ImagePtr> gathered;
  for (size_t i = 0; i < sources.size(); ++i) {
    MPSNN_CHECK(sources[i].size() == n, GraphError, "[MPSNNGraph.encode_batch] source batch ", i, " has ",
                sources[i].size(), " images; batch 0 has ", n);
    const ImagePtr& first = sources[i][0];
    MPSNN_CHECK(first != nullptr, GraphError, "[MPSNNGraph.encode_batch] source ", i, " image 0 is None");
    ImageDescriptor d;
    d.channel_format = first->format();
    d.width = first->width();
    d.height = first->height();
    d.feature_channels = first->feature_channels();
    d.number_of_images = int64_t(n);
    auto batch = std::make_shared<Image>(device_, d);
    const size_t per = size_t(first->shape().h * first->shape().w * first->shape().c) * first->element_bytes();
    char* dst = static_cast<char*>(batch->data());
    for (size_t k = 0; k < n; ++k) {
      const ImagePtr& img = sources[i][k];
      MPSNN_CHECK(img && img->number_of_images() == 1 && img->shape().h == first->height() &&
                      img->shape().w == first->width() && img->shape().c == first->feature_channels() &&
                      img->format() == first->format(),
                  GraphError, "[MPSNNGraph.encode_batch] source ", i, " image ", k,
                  " differs from image 0 in size, channels or format, or holds more than one image");
      MPSNN_CHECK(!img->is_temporary(), UnsupportedError,
                  "[MPSNNGraph.encode_batch] temporary source images are not supported in batches on this backend");
      // Dense images copy as one block on the device (device memory included); a channel slice
      // of a wider image goes through read_bytes, staged on the host where the device needs it.
      if (img->dense()) {
        img->wait_for_producer("MPSNNGraph.encode_batch");
        device_->copy_blocking(dst + k * per, img->data(), per);
      } else if (device_->host_accessible()) {
        img->read_bytes(dst + k * per, per, DataLayout::height_width_channels, HostStrides{}, ImageRegion{}, 0);
      } else {
        std::vector<char> host(per);
        img->read_bytes(host.data(), per, DataLayout::height_width_channels, HostStrides{}, ImageRegion{}, 0);
        device_->copy_blocking(dst + k * per, host.data(), per);
      }
    }
    gathered.push_back(batch);
  }
  // One state per position for the one N-image run: a state repeated over the batch is that state;
  // N labels objects are gathered into one (their loss images become views of its loss image).
  std::vector<StatePtr> batch_states;
  for (size_t i = 0; source_states && i < source_states->size(); ++i) {
    const std::vector<StatePtr>& items = (*source_states)[i];
    MPSNN_CHECK(!items.empty(), GraphError, "[MPSNNGraph.encode_batch] source state batch ", i, " is empty");
    bool same = true;
    for (const auto& s : items) same = same && s == items[0];
    if (same) {
      batch_states.push_back(items[0]);
      continue;
    }
    std::vector<LossLabelsPtr> labels;
    for (const auto& s : items) {
      auto l = std::dynamic_pointer_cast<LossLabels>(s);
      MPSNN_CHECK(l != nullptr, UnsupportedError, "[MPSNNGraph.encode_batch] source state batch ", i,
                  " holds different states that are not MPSCNNLossLabels; this backend runs a batch as one run, "
                  "which needs one state object (or one MPSCNNLossLabels per image)");
      labels.push_back(std::move(l));
    }
    MPSNN_CHECK(labels.size() == n, ShapeError,
                i < def_.source_states.size() ? source_state_owner(i) : std::string("[MPSNNGraph.encode_batch]"),
                " got a batch of ", labels.size(), " MPSCNNLossLabels for ", n, " source images; expected one per image");
    batch_states.push_back(LossLabels::gather(labels, "MPSNNGraph.encode_batch"));
  }
  std::vector<ImagePtr> inter;
  std::vector<StatePtr> states;
  ImagePtr result = encode(cb, gathered, source_states ? &batch_states : nullptr, &inter, &states);
  if (intermediates)
    for (auto& img : inter) intermediates->push_back(img ? img->batch_representation(0, -1) : std::vector<ImagePtr>{});
  if (destination_states)
    for (auto& s : states) destination_states->push_back(std::vector<StatePtr>(n, s));
  return result ? result->batch_representation(0, -1) : std::vector<ImagePtr>{};
}

std::vector<ImagePtr> NNGraph::run(const std::vector<ImagePtr>& sources, const std::vector<StatePtr>* source_states,
                                   std::vector<StatePtr>* destination_states) {
  // run reads its sources now: one written by an encode must have been committed (it waits then).
  for (const auto& img : sources)
    if (img && !img->is_temporary()) img->wait_for_producer("MPSNNGraph.run source");
  for (size_t i = 0; source_states && i < source_states->size(); ++i)
    if (const StatePtr& s = (*source_states)[i]) {
      for (const auto& img : s->bound_inputs()) img->wait_for_producer("MPSNNGraph.run source state");
      for (const auto& img : s->bound_outputs()) img->wait_for_producer("MPSNNGraph.run source state");
    }
  if (!def_.updates.empty()) {
    // A training graph updates its parameters as after an encode: through a command buffer of
    // the graph's own queue, committed and waited for here.
    std::call_once(queue_once_, [&] { queue_ = std::make_shared<CommandQueue>(device_); });
    CommandBufferPtr cb = queue_->make_command_buffer();
    std::vector<ImagePtr> inter;
    ImagePtr result = encode(cb, sources, source_states, &inter, destination_states);
    cb->commit();
    cb->wait_until_completed();
    std::vector<ImagePtr> out{result};
    out.insert(out.end(), inter.begin(), inter.end());
    return out;
  }
  Prepared p = prepare(sources, source_states, nullptr, "run");
  ++*pending_;
  struct Done {
    std::atomic<int>& pending;
    ~Done() { --pending; }
  } done{*pending_};
  p.plan->execute(p.inputs, p.outputs, nullptr);
  if (destination_states)
    for (size_t j = 0; j < def_.num_exported_states; ++j) destination_states->push_back(p.states[j]);
  return p.images;
}

PlanPtr NNGraph::plan_for(const std::vector<ImagePtr>& sources, const std::vector<StatePtr>* source_states) {
  return prepare(sources, source_states, nullptr, "plan").plan;
}

size_t NNGraph::num_plans() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return plans_.size();
}

int NNGraph::read_count_for_source_image(int index) const {
  MPSNN_CHECK(index >= 0 && size_t(index) < def_.source_images.size(), GraphError,
              "[MPSNNGraph.read_count_for_source_image] index ", index, " is outside [0, ",
              def_.source_images.size(), ")");
  return 1;  // graph.md §2.5: one read per encode, however often the graph reads it internally
}

int NNGraph::read_count_for_source_state(int index) const {
  MPSNN_CHECK(index >= 0 && size_t(index) < def_.source_states.size(), GraphError,
              "[MPSNNGraph.read_count_for_source_state] index ", index, " is outside [0, ",
              def_.source_states.size(), ")");
  return 1;
}

void NNGraph::reload_from_data_sources() {
  check_not_reentered("reload_from_data_sources");
  MPSNN_CHECK(pending_->load() == 0, GraphError,
              "[MPSNNGraph.reload_from_data_sources] ", pending_->load(),
              " run(s) of this graph have not completed; wait for their command buffers first");
  std::lock_guard<std::mutex> compile_lock(compile_mutex_);
  BusyScope busy(busy_thread_);
  // Parameters are updated in place; plans survive unless a descriptor changed their structure.
  if (params_->reload()) {
    std::lock_guard<std::mutex> lock(mutex_);
    plans_.clear();
  }
}

std::string NNGraph::debug_description() {
  std::ostringstream os;
  os << "MPSNNGraph on device '" << device_->name() << "' (backend " << registry_->backend() << ")\n";
  os << "  " << def_.source_images.size() << " source image(s), " << def_.source_states.size()
     << " source state(s), " << def_.filters.size() << " filter(s), " << (def_.outputs.size() - 1)
     << " intermediate image(s)\n";
  os << "  format " << format_name(format()) << ", fusion " << (options().fuse ? "on" : "off") << "\n";
  for (const auto& f : def_.filters) {
    os << "  " << f->context() << " <- ";
    for (size_t i = 0; i < f->sources().size(); ++i) {
      auto parent = f->sources()[i]->parent();
      os << (i ? ", " : "") << (parent ? parent->context() : std::string("source image"));
    }
    os << "\n";
  }
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& kv : plans_) os << kv.second->describe();
  return os.str();
}

}  // namespace mpsnn
