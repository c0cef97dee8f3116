// MPSNNGraph (graph.md §2). Inputs are converted to C++ first, then the GIL is released around
// compilation and execution; Python callbacks (data sources, padding, allocators) take it back.
#include "backends/registry.h"
#include "bindings/common.h"

namespace mpsnn::bindings {
namespace {
// The source_images argument of run / encode: a list (or tuple) of images or arrays. Anything else
// (typically one array passed without the list) is a DTypeError that names the fix and shows no
// array repr.
struct SourceImageList {
  py::list items;
};
}  // namespace
}  // namespace mpsnn::bindings

namespace pybind11::detail {
template <>
struct type_caster<mpsnn::bindings::SourceImageList> {
  PYBIND11_TYPE_CASTER(mpsnn::bindings::SourceImageList, const_name("list"));
  bool load(handle src, bool) {
    if (PyList_Check(src.ptr()) || PyTuple_Check(src.ptr())) {
      PyObject* l = PySequence_List(src.ptr());
      if (!l) throw error_already_set();
      value.items = reinterpret_steal<list>(l);
      return true;
    }
    const std::string cls = str(type::handle_of(src).attr("__module__")).cast<std::string>() + "." +
                            str(type::handle_of(src).attr("__qualname__")).cast<std::string>();
    throw mpsnn::DTypeError("[MPSNNGraph] source_images is a " + cls +
                            "; pass a list of source images, one per source_image_handles entry: graph.run([x]), "
                            "graph.encode(command_buffer, [x])");
  }
};
}  // namespace pybind11::detail

namespace mpsnn::bindings {

namespace {

struct PyGraph {
  std::shared_ptr<NNGraph> graph;
  bool multi_result = false;
  std::mutex queue_mutex;
  CommandQueuePtr queue;  // private queue of execute_async
};
using PyGraphPtr = std::shared_ptr<PyGraph>;

// MPSKernelOptionsVerbose output: the graph layer describes each plan it compiles, Python's
// sys.stderr prints it.
void log_to_stderr(NNGraph& g) {
  g.set_log([](const std::string& text) {
    PythonCall call;
    if (!call.ok()) return;
    try {
      py::module_::import("sys").attr("stderr").attr("write")(text);
    } catch (py::error_already_set& e) {
      e.discard_as_unraisable("MPSNNGraph verbose log");
    }
  });
}

PyGraphPtr make_graph(const DevicePtr& device, const ImageNodePtr& result_image, bool result_image_is_needed,
                      const std::optional<std::vector<ImageNodePtr>>& result_images,
                      const std::optional<std::vector<bool>>& results_are_needed) {
  MPSNN_CHECK(device != nullptr, GraphError, "[MPSNNGraph] device is None");
  auto g = std::make_shared<PyGraph>();
  std::vector<ImageNodePtr> results;
  std::vector<bool> needed;
  if (result_images) {
    MPSNN_CHECK(!result_image, GraphError, "[MPSNNGraph] pass result_image or result_images, not both");
    results = *result_images;
    needed = results_are_needed.value_or(std::vector<bool>(results.size(), true));
    g->multi_result = true;
  } else {
    MPSNN_CHECK(result_image != nullptr, GraphError, "[MPSNNGraph] result_image is required");
    MPSNN_CHECK(!results_are_needed, GraphError, "[MPSNNGraph] results_are_needed goes with result_images");
    results = {result_image};
    needed = {result_image_is_needed};
  }
  g->graph = std::make_shared<NNGraph>(device, results, needed, kernel_registry(device->backend()));
  log_to_stderr(*g->graph);
  return g;
}

std::vector<ImagePtr> to_images(const py::list& sources, const DevicePtr& device) {
  std::vector<ImagePtr> out;
  for (size_t i = 0; i < sources.size(); ++i) {
    py::object o = sources[i];
    if (o.is_none()) {
      out.push_back(nullptr);
      continue;
    }
    out.push_back(to_image(o, device, "MPSNNGraph source image"));
  }
  return out;
}

py::list handles(const std::vector<HandlePtr>& hs) {
  py::list l;
  for (const auto& h : hs) l.append(from_handle(h));
  return l;
}

// source_states: None or one MPSState per source_state_handles entry.
std::optional<std::vector<StatePtr>> to_states(const py::object& states, const char* what) {
  if (states.is_none()) return std::nullopt;
  std::vector<StatePtr> out;
  for (const py::handle& item : states) {
    MPSNN_CHECK(py::isinstance<State>(item), DTypeError, "[MPSNNGraph.", what, "] source state ", out.size(),
                " is a ", std::string(py::str(py::type::of(item).attr("__name__"))), "; expected an MPSState");
    out.push_back(item.cast<StatePtr>());
  }
  return out;
}

// encode_batch: one MPSStateBatch (a list) per source_state_handles entry; a bare MPSState stands
// for a batch repeating it. NNGraph::encode_batch decides what a batch of distinct states means.
std::optional<std::vector<std::vector<StatePtr>>> to_state_batches(const py::object& states) {
  if (states.is_none()) return std::nullopt;
  std::vector<std::vector<StatePtr>> out;
  for (const py::handle& item : states) {
    std::vector<StatePtr> batch;
    if (py::isinstance<State>(item)) {
      batch.push_back(item.cast<StatePtr>());
    } else {
      for (const py::handle& s : item) {
        MPSNN_CHECK(py::isinstance<State>(s), DTypeError, "[MPSNNGraph.encode_batch] source state batch ", out.size(),
                    " holds a ", std::string(py::str(py::type::of(s).attr("__name__"))), "; expected MPSStates");
        batch.push_back(s.cast<StatePtr>());
      }
    }
    out.push_back(std::move(batch));
  }
  return out;
}

void append_all(const py::object& list, const py::object& items) {
  if (list.is_none()) return;
  for (const py::handle& i : items) list.attr("append")(i);
}


std::vector<uint8_t> graph_bytes(const PyGraph& p) {
  GraphExtras extras;
  extras.multi_result = p.multi_result;
  return graph_to_bytes(*p.graph, extras, python_save_hooks());
}

PyGraphPtr graph_from_py_bytes(const py::object& data, const DevicePtr& device) {
  MPSNN_CHECK(PyObject_CheckBuffer(data.ptr()) && !PyUnicode_Check(data.ptr()), DTypeError,
              "[MPSNNGraph.from_bytes] data is a ", std::string(py::str(py::type::of(data).attr("__name__"))),
              "; expected bytes, a bytearray or a memoryview (what to_bytes() returned)");
  py::buffer_info info = data.cast<py::buffer>().request();
  MPSNN_CHECK(info.ndim <= 1 && (info.ndim == 0 || info.strides[0] == info.itemsize), DTypeError,
              "[MPSNNGraph.from_bytes] data must be contiguous bytes (bytes, bytearray or a memoryview)");
  const DevicePtr d = device ? device : system_default_device();
  auto g = std::make_shared<PyGraph>();
  GraphExtras extras;
  g->graph = graph_from_bytes(static_cast<const uint8_t*>(info.ptr), size_t(info.size * info.itemsize), d,
                              kernel_registry(d->backend()), python_load_hooks(d), &extras);
  g->multi_result = extras.multi_result;
  log_to_stderr(*g->graph);
  return g;
}

py::bytes py_bytes(const std::vector<uint8_t>& b) { return py::bytes(reinterpret_cast<const char*>(b.data()), b.size()); }

std::string graph_dot(PyGraph& p, bool plan, const py::object& source_images, const py::object& source_states) {
  PlanPtr compiled;
  const auto states = to_states(source_states, "to_dot");
  if (!source_images.is_none())
    compiled = p.graph->plan_for(to_images(py::list(source_images), p.graph->device()), states ? &*states : nullptr);
  if (plan) {
    MPSNN_CHECK(compiled != nullptr, GraphError,
                "[MPSNNGraph.to_dot] plan=True needs source_images: the graph compiles one plan per set of source "
                "sizes (pass the images, or arrays of their shape)");
    return plan_to_dot(*compiled, p.graph->label.empty() ? "MPSNNGraph" : "MPSNNGraph '" + p.graph->label + "'");
  }
  DotNames names;
  names.filter = [](const FilterNode& f) {
    py::object o = py::cast(std::const_pointer_cast<FilterNode>(f.shared_from_this()));
    return py::str(py::type::of(o).attr("__name__")).cast<std::string>();
  };
  names.state = [](const StateNode& s) {
    py::object o = py::cast(&s, py::return_value_policy::reference);
    return py::str(py::type::of(o).attr("__name__")).cast<std::string>();
  };
  return graph_to_dot(*p.graph, names, compiled.get());
}
}  // namespace

void bind_graph(py::module_& m) {
  m.def(
      "_op_kinds",
      [] {
        py::list out;
        for (int k = 0; k < kNumOpKinds; ++k) {
          const OpSchema& s = schema(OpKind(k));
          py::dict d;
          d["name"] = s.name;
          d["gradient"] = s.gradient == OpKind::None ? py::object(py::none()) : py::object(py::str(op_name(s.gradient)));
          d["is_gradient"] = s.is_gradient;
          d["internal"] = s.internal;
          py::list kernels;
          for (const auto& b : available_backends())
            if (kernel_registry(b)->find(OpKind(k))) kernels.append(b);
          d["kernels"] = kernels;
          out.append(d);
        }
        return out;
      },
      "Test aid: every op kind of op_list.def with its gradient kind and the backends that have a kernel for it.");
  py::class_<PyGraph, PyGraphPtr> g(
      m, "MPSNNGraph",
      "An optimized, executable form of the nodes needed for one or more result images.\n\n"
      "The graph reads its data sources when it is built and compiles one immutable plan per set of source sizes "
      "and formats (pruning, shape inference, batch-norm folding, neuron and residual-addition fusion, NHWC "
      "layouts, temporary memory reuse). On the CPU backend `format` defaults to float32 (MPS's default is "
      "float16); float16, unorm8 and unorm16 are supported as storage at the graph's boundaries.\n\n"
      "Example:\n    graph = MPSNNGraph(device, result_image=softmax.result_image)\n    probs = graph.run([x]).numpy()");
  g.def(py::init(&make_graph), "device"_a, "result_image"_a = nullptr, "result_image_is_needed"_a = true,
        py::kw_only(), "result_images"_a = py::none(), "results_are_needed"_a = py::none())
      .def_static("graph", &make_graph, "device"_a, "result_image"_a = nullptr, "result_image_is_needed"_a = true,
                  py::kw_only(), "result_images"_a = py::none(), "results_are_needed"_a = py::none())
      .def(
          "copy",
          [](const PyGraph& p, const DevicePtr& device) {
            auto g = std::make_shared<PyGraph>();
            g->multi_result = p.multi_result;
            const DevicePtr& d = device ? device : p.graph->device();
            g->graph = p.graph->copy(d, kernel_registry(d->backend()));
            log_to_stderr(*g->graph);
            return g;
          },
          "device"_a = nullptr,
          "An independent graph over the same nodes with the same properties, on `device` or this graph's "
          "(MPSKernel copy, graph.md §2.9). The data sources are read again.")
      .def("to_bytes", [](const PyGraph& p) { return py_bytes(graph_bytes(p)); },
           "The graph as bytes (graph.md §2.9): its nodes with every attribute, padding policy, handle label and the "
           "weights and parameters of its data sources, and its properties, in mpsnn's versioned, data-only format "
           "(cpp/graph/serialize.h documents it). Custom padding policies, image allocators and transform providers "
           "(Python code) cannot be stored: UnsupportedError names the node.")
      .def_static("from_bytes", &graph_from_py_bytes, "data"_a, "device"_a = nullptr,
                  "A graph from to_bytes() data, on `device` (None: the system default device). Nothing in the data "
                  "is executed: data sources are loaded as ArrayConvolutionDataSource / "
                  "ArrayBatchNormalizationDataSource / ArrayInstanceNormalizationDataSource, handles as LabelHandle. "
                  "Truncated or corrupted data raises SerializationError naming the section, field and byte offset.")
      .def("__reduce__", [](const PyGraph& p) {
        return py::make_tuple(py::module_::import("mpsnn._serialization").attr("load_graph"),
                              py::make_tuple(py_bytes(graph_bytes(p))));
      }, "Pickles through to_bytes(); unpickling makes the graph on the system default device.")
      .def("__deepcopy__", [](const PyGraph& p, const py::object&) {
        const auto b = graph_bytes(p);
        return graph_from_py_bytes(py::memoryview::from_memory(b.data(), py::ssize_t(b.size())), p.graph->device());
      }, "memo"_a, "An independent graph with its own nodes and data sources (through to_bytes).")
      .def("to_dot", &graph_dot, "plan"_a = false, "source_images"_a = py::none(), "source_states"_a = py::none(),
           "mpsnn extension: the graph as Graphviz DOT text. plan=False: its nodes (MPS class names, labels, attributes "
           "that differ from the defaults, handles; with source_images (and source_states for a graph that has "
           "source states, e.g. loss labels) also the image sizes). plan=True: the plan compiled for source_images (steps with what they fused, values with their arena offsets: values sharing "
           "an offset reuse one block of memory).")
      .def(
          "save_picture",
          [](PyGraph& p, const py::object& path, bool plan, const py::object& source_images,
             const py::object& source_states) {
            const std::string dot = graph_dot(p, plan, source_images, source_states);
            py::module_::import("mpsnn._pictures").attr("render_dot")(dot, path);
          },
          "path"_a, "plan"_a = false, "source_images"_a = py::none(), "source_states"_a = py::none(),
          "mpsnn extension: writes to_dot(plan, source_images) as a picture, SVG or PNG by the path's extension, with "
          "Graphviz's `dot` (it must be on PATH: UnsupportedError otherwise).")
      .def("__copy__", [](const PyGraph& p) {
        auto g = std::make_shared<PyGraph>();
        g->multi_result = p.multi_result;
        g->graph = p.graph->copy(nullptr, nullptr);
        log_to_stderr(*g->graph);
        return g;
      })
      .def_property_readonly("device", [](const PyGraph& p) { return p.graph->device(); })
      .def_property_readonly("source_image_handles", [](const PyGraph& p) { return handles(p.graph->source_image_handles()); })
      .def_property_readonly("source_state_handles", [](const PyGraph& p) { return handles(p.graph->source_state_handles()); })
      .def_property_readonly("intermediate_image_handles",
                             [](const PyGraph& p) { return handles(p.graph->intermediate_image_handles()); })
      .def_property_readonly("result_state_handles", [](const PyGraph& p) { return handles(p.graph->result_state_handles()); })
      .def_property_readonly("result_handle", [](const PyGraph& p) { return from_handle(p.graph->result_handle()); })
      .def_property_readonly("result_image_is_needed", [](const PyGraph& p) { return p.graph->result_image_is_needed(); })
      .def_property("format", [](const PyGraph& p) { return p.graph->format(); },
                    [](PyGraph& p, ChannelFormat f) { p.graph->set_format(f); },
                    "Storage format of result and exported images whose node format is none (float32 by default).")
      .def_property("destination_image_allocator",
                    [](const PyGraph& p) { return from_allocator(p.graph->destination_image_allocator()); },
                    [](PyGraph& p, const py::object& a) { p.graph->set_destination_image_allocator(to_allocator(a)); })
      .def_property("output_state_is_temporary", [](const PyGraph& p) { return p.graph->output_state_is_temporary; },
                    [](PyGraph& p, bool v) { p.graph->output_state_is_temporary = v; })
      .def_property("label", [](const PyGraph& p) { return p.graph->label; },
                    [](PyGraph& p, const std::string& v) { p.graph->label = v; })
      .def_property(
          "options",
          [](const PyGraph& p) { return py::module_::import("mpsnn._core").attr("MPSKernelOptions")(p.graph->kernel_options); },
          [](PyGraph& p, int v) { p.graph->kernel_options = v; },
          "MPSKernelOptions; with verbose, each plan the graph compiles is described on stderr (steps, fusions, "
          "buffers).")
      .def_property(
          "fusion_enabled", [](const PyGraph& p) { return p.graph->options().fuse; },
          [](PyGraph& p, bool v) {
            auto o = p.graph->options();
            o.fuse = v;
            p.graph->set_options(o);
          },
          "mpsnn extension: fuse batch norm, neurons and residual additions into convolutions (default True). "
          "Results are the same either way; switch off to compare.")
      .def_property(
          "poison_temporaries", [](const PyGraph& p) { return p.graph->options().poison_temporaries; },
          [](PyGraph& p, bool v) {
            auto o = p.graph->options();
            o.poison_temporaries = v;
            p.graph->set_options(o);
          },
          "mpsnn extension (testing aid): fill temporary memory with NaN before every run.")
      .def(
          "encode",
          [](PyGraph& p, const CommandBufferPtr& cb, const SourceImageList& sources, const py::object& source_states,
             const py::object& intermediate_images, const py::object& destination_states) {
            const auto states = to_states(source_states, "encode");
            auto imgs = to_images(sources.items, p.graph->device());
            std::vector<ImagePtr> inter;
            std::vector<StatePtr> out_states;
            ImagePtr result;
            {
              ReleaseGil nogil;
              result = p.graph->encode(cb, imgs, states ? &*states : nullptr, &inter, &out_states);
            }
            append_all(intermediate_images, py::cast(inter));
            append_all(destination_states, py::cast(out_states));
            return result;
          },
          "command_buffer"_a, "source_images"_a, "source_states"_a = py::none(), "intermediate_images"_a = py::none(),
          "destination_states"_a = py::none(),
          "Encode one run; returns the result image (written when the command buffer runs) or None. CPU reads of "
          "the returned images (numpy(), read_bytes, __array__, DLPack) wait for the committed command buffer and "
          "raise MPSGraphError before commit(). "
          "destination_states receives the exported result states (result_state_handles order), temporary iff "
          "output_state_is_temporary.")
      .def(
          "encode_batch",
          [](PyGraph& p, const CommandBufferPtr& cb, const std::vector<py::list>& sources, const py::object& source_states,
             const py::object& intermediate_images, const py::object& destination_states) {
            const auto states = to_state_batches(source_states);
            std::vector<std::vector<ImagePtr>> batches;
            for (const auto& l : sources) batches.push_back(to_images(l, p.graph->device()));
            std::vector<std::vector<ImagePtr>> inter;
            std::vector<std::vector<StatePtr>> out_states;
            std::vector<ImagePtr> result;
            {
              ReleaseGil nogil;
              result = p.graph->encode_batch(cb, batches, states ? &*states : nullptr, &inter, &out_states);
            }
            append_all(intermediate_images, py::cast(inter));
            append_all(destination_states, py::cast(out_states));
            return result.empty() ? py::object(py::none()) : py::cast(result);
          },
          "command_buffer"_a, "source_images"_a, "source_states"_a = py::none(), "intermediate_images"_a = py::none(),
          "destination_states"_a = py::none(), "Encode a batch: one list of single images per source.")
      .def(
          "run",
          [](PyGraph& p, const SourceImageList& sources, const py::object& intermediate_images,
             const py::object& source_states, const py::object& destination_states) -> py::object {
            const auto in_states = to_states(source_states, "run");
            auto imgs = to_images(sources.items, p.graph->device());
            std::vector<ImagePtr> outs;
            std::vector<StatePtr> states;
            {
              ReleaseGil nogil;
              outs = p.graph->run(imgs, in_states ? &*in_states : nullptr, &states);
            }
            const auto& def = p.graph->definition();
            if (!intermediate_images.is_none())
              for (size_t j = 1; j < outs.size(); ++j) intermediate_images.attr("append")(outs[j]);
            append_all(destination_states, py::cast(states));
            if (!p.multi_result) return outs[0] ? py::cast(outs[0]) : py::none();
            // Several results: in the initializer's order (None where not needed).
            py::list results;
            for (size_t r = 0; r < def.results.size(); ++r) {
              py::object img = py::none();
              for (size_t j = 0; j < def.outputs.size(); ++j)
                if (def.outputs[j] && def.outputs[j] == def.results[r] && outs[j]) img = py::cast(outs[j]);
              results.append(img);
            }
            return results;
          },
          "source_images"_a, "intermediate_images"_a = py::none(), "source_states"_a = py::none(),
          "destination_states"_a = py::none(),
          "mpsnn convenience: run now on this thread (GIL released) and return the result MPSImage (a list for "
          "the several-results initializer).\n\nArgs:\n    source_images: MPSImages or C-contiguous (N, H, W, C) "
          "NumPy arrays (wrapped without copying), in source_image_handles order.\n    intermediate_images: "
          "optional list that receives the exported images.\n    source_states: MPSStates in "
          "source_state_handles order (persistent ones: run has no command buffer).\n    destination_states: optional list that receives "
          "the exported result states (persistent MPSStates).")
      .def(
          "execute_async",
          [](PyGraph& p, const py::list& sources, const py::function& handler) {
            CommandQueuePtr q;
            {
              std::lock_guard<std::mutex> lock(p.queue_mutex);
              if (!p.queue) p.queue = std::make_shared<CommandQueue>(p.graph->device());
              q = p.queue;
            }
            auto cb = q->make_command_buffer();
            // As in MPS, every error (of the sources too) goes to the completion handler, not the caller.
            ImagePtr result;
            auto failure = std::make_shared<std::string>();
            try {
              auto imgs = to_images(sources, p.graph->device());
              MPSNN_CHECK(!imgs.empty(), GraphError, "[MPSNNGraph.execute_async] needs at least one source image");
              ReleaseGil nogil;
              result = p.graph->encode(cb, imgs, nullptr, nullptr, nullptr);
            } catch (py::error_already_set& e) {
              *failure = e.what();
            } catch (const std::exception& e) {
              *failure = e.what();
            }
            if (failure->empty()) failure.reset();
            auto ref = std::make_shared<PyRef>(handler);
            cb->add_completed_handler([ref, result, failure](CommandBuffer& c) {
              PythonCall call;
              if (!call.ok()) return;  // the interpreter is exiting (gil.h)
              // Taken out under the GIL: the handler itself is destroyed after the buffer counts as
              // completed (what the atexit hook waits for), when the interpreter may be finalizing.
              const py::object callback = std::move(ref->obj);
              if (!callback) return;
              py::object err = failure ? py::object(py::str(*failure)) : py::object(py::none());
              if (auto e = c.error(); e && !failure) {
                try {
                  std::rethrow_exception(e);
                } catch (const std::exception& ex) {
                  err = py::str(ex.what());
                }
              }
              try {
                callback(err.is_none() ? py::cast(result) : py::none(), err);
              } catch (py::error_already_set& pe) {
                pe.discard_as_unraisable("MPSNNGraph.execute_async completion handler");
              }
            });
            cb->commit();
            return result;
          },
          "source_images"_a, "completion_handler"_a,
          "Run on a private queue; completion_handler(result, error) is called on a worker thread: error is None "
          "or the message of what failed (invalid sources included: nothing is raised here), result then None. "
          "Returns the result image (None when encoding failed).")
      .def("read_count_for_source_image", [](const PyGraph& p, int i) { return p.graph->read_count_for_source_image(i); }, "index"_a)
      .def("read_count_for_source_state", [](const PyGraph& p, int i) { return p.graph->read_count_for_source_state(i); }, "index"_a)
      .def("reload_from_data_sources", [](PyGraph& p) { p.graph->reload_from_data_sources(); })
      .def_property_readonly("debug_description", [](PyGraph& p) { return p.graph->debug_description(); },
                             "The nodes and the compiled plans, as text (a property, as in MPS).")
      .def_property_readonly("_num_compiled_plans", [](const PyGraph& p) { return p.graph->num_plans(); },
                             "Test aid: plans in the cache (one per set of source sizes and formats).")
      .def(
          "plan_description",
          [](PyGraph& p, const py::list& sources) {
            auto imgs = to_images(sources, p.graph->device());
            return p.graph->plan_for(imgs)->describe();
          },
          "source_images"_a, "mpsnn extension: the compiled plan for these sources (steps, buffers, fusion).");
}

}  // namespace mpsnn::bindings
