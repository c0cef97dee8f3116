// Parameter updates of training graphs (graph.md §1.7, §6.4-6.6): after the plan run is encoded,
// each trainable gradient node whose data source implements an update method gets it called.
//
// GPU style (updateDeviceGPU), during encode, in the graph's order (the loss end first):
//   1. a task that checks every parameter gradient of the step is finite; NaN or infinity fails
//      the command buffer before any update task runs, so no parameter of that step changes
//      (documented choice for "NaN in the loss": raise, never write NaN weights);
//   2. per node: a task filling a source state with the weights the kernels used (a view of the
//      graph's parameter slot when the command buffer runs, no copy), then the data source's update_with_command_buffer (it encodes
//      its optimizer on the same command buffer) and, when it returned a state, a task loading
//      that state into the graph's parameter slots of the forward and gradient kernels. Values
//      that are not finite are refused there too.
//   If a data source raises or returns the wrong type, the command buffer is aborted (nothing of it
//   runs, earlier updates included) and the error reaches the caller of encode.
// CPU style (updateDeviceCPU): a completion handler, run only when the command buffer completed
// without error, calls update_with_gradient_state / update_gamma_and_beta_with_* with host-visible
// states and then reads the data source again into the slots.
//
// Runs of one training graph execute one at a time (a mutex around the plan run): its parameter
// slots change between runs, and kernels refresh their derived layouts (reordered weights) when
// they see a new version, which must not happen while another run of the same plan reads them.
#include <cstdint>
#include <cstring>

#include "core/errors.h"
#include "core/storage.h"
#include "graph/nn_graph.h"

namespace mpsnn {

namespace {

using Update = NormalizationDataSource::Update;

// How many of n floats are NaN or infinite: exponent bits all ones. An integer test the compiler
// vectorizes (std::isfinite is a library call per value here).
int64_t count_non_finite(const float* p, int64_t n) {
  const auto* bits = reinterpret_cast<const uint32_t*>(p);
  int64_t bad = 0;
  for (int64_t k = 0; k < n; ++k) bad += (bits[k] & 0x7f800000u) == 0x7f800000u;
  return bad;
}

// Throws unless every value of the gradient buffers of `s` is finite.
void check_finite_gradients(State& s, const std::string& ctx) {
  for (const char* role : {"gradient_for_weights", "gradient_for_biases", "gradient_for_gamma", "gradient_for_beta"}) {
    const int i = s.find_buffer(role);
    if (i < 0) continue;
    const float* p = static_cast<const float*>(s.resource(i, true)->data());
    const int64_t n = s.layout()[size_t(i)].shape.numel();
    const int64_t bad = count_non_finite(p, n);
    MPSNN_CHECK(bad == 0, GraphError, ctx, " ", bad, " of the ", n, " values of ", role,
                " are NaN or infinite (a non-finite loss?); no parameter of this training step was updated");
  }
}

const float* floats_at(ParameterPairState& s, bool first) {
  BufferPtr b = first ? s.first() : s.second();
  return reinterpret_cast<const float*>(static_cast<const char*>(b->data()) +
                                        (first ? s.first_offset() : s.second_offset()));
}

// `n` values of a returned state's buffer, refusing non-finite ones (the slot keeps its values).
// The one copy a step makes of each parameter: the slot's values are immutable per version, and
// the returned state's memory belongs to the data source (an Array*DataSource's live arrays).
std::vector<float> take_finite(ParameterPairState& s, bool first, int64_t n, const std::string& ctx, const char* what) {
  const float* p = floats_at(s, first);
  MPSNN_CHECK(count_non_finite(p, n) == 0, GraphError, ctx, " the updated ", what,
              " hold NaN or infinity; the graph keeps the previous values");
  return std::vector<float>(p, p + n);  // copied, not zero-filled first
}

// A state sized for the weights and biases of `c` (biases: Cout even when the data source has none,
// as MPSCNNConvolutionWeightsAndBiasesState(device, descriptor) makes them); its buffers get memory
// when the snapshot task fills them.
std::shared_ptr<WeightsAndBiasesState> weights_state(const DevicePtr& device, const ConvolutionParams& c) {
  return std::make_shared<WeightsAndBiasesState>(device, nullptr, c.weights.size() * 4,
                                                 size_t(c.desc.output_feature_channels) * 4);
}
// The snapshot: on a host-addressable device the state's buffers become views of the slot's
// (immutable) parameter vectors, kept alive by the state — no copy; a buffer somebody already
// touched (or device memory) gets a copy. Missing biases stay zeros.
void fill_weights_state(WeightsAndBiasesState& s, const std::shared_ptr<const ConvolutionParams>& c) {
  auto fill = [&](const BufferPtr& b, const std::vector<float>& v) {
    if (v.empty()) return;
    const size_t bytes = v.size() * 4;
    if (s.device()->host_accessible() &&
        b->bind(Storage::borrow(const_cast<float*>(v.data()), bytes, std::const_pointer_cast<ConvolutionParams>(c),
                                s.device()->memory_kind())))
      return;
    std::memcpy(b->data(), v.data(), bytes);
  };
  fill(s.lazy_part(0), c->weights);
  if (s.resource_count() > 1) fill(s.lazy_part(1), c->bias);
}

void check_pair(const StatePtr& r, int64_t first, int64_t second, const std::string& ctx, const char* method,
                const char* names) {
  auto* p = dynamic_cast<ParameterPairState*>(r.get());
  MPSNN_CHECK(p != nullptr, DTypeError, ctx, " ", method, " returned a state of another class");
  MPSNN_CHECK(p->first_count() >= first && (second == 0 || p->second() == nullptr || p->second_count() >= second),
              ShapeError, ctx, " ", method, " returned a state with ", p->first_count(), " and ", p->second_count(),
              " values (", names, "); expected ", first, " and ", second);
}

}  // namespace

void NNGraph::encode_updates(const CommandBufferPtr& cb, const std::vector<StatePtr>& states) {
  if (device_->host_accessible()) {
    // 1. One check of all gradients before any update task.
    std::vector<std::pair<std::string, StatePtr>> grads;
    for (const auto& u : def_.updates) grads.emplace_back(u.gradient->context(), states[u.state]);
    cb->encode([grads](Stream&) {
      for (const auto& [ctx, s] : grads) check_finite_gradients(*s, ctx);
    }, "MPSNNGraph parameter gradient check");
  }
  std::shared_ptr<ParamStore> params = params_;
  std::vector<const GraphDef::Update*> cpu;
  try {
    for (const auto& u : def_.updates) {
      if (u.style == TrainingStyle::update_device_cpu) {
        cpu.push_back(&u);
        continue;
      }
      FilterNode& g = *u.gradient;
      const std::string ctx = g.context();
      const std::vector<const FilterNode*> kernels{u.gradient.get(), u.forward.get()};
      const StatePtr& gradient_state = states[u.state];
      const ParamSlot* slot = params->slot_of(g);
      MPSNN_CHECK(slot != nullptr, GraphError, ctx, " has no parameters to update");
      const NodeParams now = slot->values();
      if (g.convolution_source) {
        const int64_t nw = int64_t(now.conv->weights.size()), nb = int64_t(now.conv->bias.size());
        // The weights the kernels used: the slot's values when this command buffer runs.
        auto source = weights_state(device_, *now.conv);
        cb->encode([slot, source](Stream&) { fill_weights_state(*source, slot->values().conv); },
                   "MPSNNGraph parameter snapshot");
        StatePtr r = with_node_context(g, [&] { return g.convolution_source->update_with_command_buffer(cb, gradient_state, source); });
        if (!r) continue;
        check_pair(r, nw, nb, ctx, "update_with_command_buffer()", "weights, biases");
        auto result = std::static_pointer_cast<ParameterPairState>(r);
        cb->encode([params, slot, kernels, result, nw, nb, ctx](Stream&) {
          const NodeParams v = slot->values();
          auto p = std::make_shared<ConvolutionParams>();
          p->desc = v.conv->desc;
          p->label = v.conv->label;
          p->weights = take_finite(*result, true, nw, ctx, "weights");
          p->bias = nb && result->second() ? take_finite(*result, false, nb, ctx, "biases") : v.conv->bias;
          params->update(kernels, NodeParams{p, nullptr});
        }, "MPSNNGraph parameter load");
        continue;
      }
      // Batch / instance normalization: gamma and beta, then (batch norm) the running statistics.
      const bool instance = g.kind() == OpKind::InstanceNormalizationGradient;
      const int64_t n = now.norm->channels;
      for (Update which : {Update::gpu_gamma_beta, Update::gpu_mean_variance}) {
        if (instance && which == Update::gpu_mean_variance) continue;
        if (!with_node_context(g, [&] { return g.normalization_source->has_update(which, instance); })) continue;
        const bool gb = which == Update::gpu_gamma_beta;
        const char* method = gb ? "update_gamma_and_beta_with_command_buffer()" : "update_mean_and_variance_with_command_buffer()";
        StatePtr r = with_node_context(g, [&] {
          return g.normalization_source->update_on_command_buffer(which, instance, cb, gradient_state);
        });
        if (!r) continue;
        check_pair(r, n, n, ctx, method, gb ? "gamma, beta" : "mean, variance");
        auto result = std::static_pointer_cast<ParameterPairState>(r);
        cb->encode([params, slot, kernels, result, n, gb, ctx](Stream&) {
          auto p = std::make_shared<NormalizationParams>(*slot->values().norm);
          (gb ? p->gamma : p->mean) = take_finite(*result, true, n, ctx, gb ? "gamma" : "mean");
          if (result->second()) (gb ? p->beta : p->variance) = take_finite(*result, false, n, ctx, gb ? "beta" : "variance");
          params->update(kernels, NodeParams{nullptr, p});
        }, "MPSNNGraph parameter load");
      }
    }
  } catch (...) {
    // Nothing of this command buffer may run now: not the step, not the updates encoded so far.
    cb->abort(std::current_exception());
    throw;
  }
  if (cpu.empty()) return;
  // CPU style: after completion, with host-visible states (graph.md §1.7).
  std::vector<GraphDef::Update> todo;
  std::vector<StatePtr> todo_states;
  for (const auto* u : cpu) {
    todo.push_back(*u);
    todo_states.push_back(states[u->state]);
  }
  DevicePtr device = device_;
  cb->add_completed_handler([params, todo, todo_states, device](CommandBuffer& done) {
    if (done.error()) return;  // a failed step updates nothing
    for (size_t i = 0; i < todo.size(); ++i) {
      FilterNode& g = *todo[i].gradient;
      const StatePtr& gs = todo_states[i];
      bool changed = false;
      if (g.convolution_source) {
        const NodeParams v = params->values_of(g);
        auto source = weights_state(device, *v.conv);
        fill_weights_state(*source, v.conv);
        changed = with_node_context(g, [&] { return g.convolution_source->update_with_gradient_state(gs, source); });
      } else {
        const bool instance = g.kind() == OpKind::InstanceNormalizationGradient;
        for (Update which : {Update::cpu_gamma_beta, Update::cpu_mean_variance}) {
          if (instance && which == Update::cpu_mean_variance) continue;
          auto& src = *g.normalization_source;
          if (!with_node_context(g, [&] { return src.has_update(which, instance); })) continue;
          changed = with_node_context(g, [&] { return src.update_after_completion(which, instance, gs); }) || changed;
        }
      }
      if (!changed) continue;
      params->reread(g);
      if (todo[i].forward && params->slot_of(*todo[i].forward) != params->slot_of(g)) params->reread(*todo[i].forward);
    }
  });
}

}  // namespace mpsnn
