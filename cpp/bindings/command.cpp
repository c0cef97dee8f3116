// MTLDevice, MTLCommandQueue, MTLCommandBuffer / MPSCommandBuffer.
#include "backends/registry.h"
#include "bindings/common.h"

namespace mpsnn::bindings {

namespace {
// Runs a Python completion handler on the worker thread; its exception is stored in the
// command buffer (C++ side) and re-raised by wait_until_completed().
CommandBuffer::Handler python_handler(py::function fn) {
  auto ref = std::make_shared<PyRef>(std::move(fn));
  return [ref](CommandBuffer& cb) {
    PythonCall call;
    if (!call.ok()) return;  // the interpreter is exiting (gil.h)
    // Taken out under the GIL: the handler itself is destroyed after the buffer counts as
    // completed, which is what the atexit hook waits for.
    const py::object callback = std::move(ref->obj);
    if (!callback) return;
    try {
      callback(cb.shared_from_this());
    } catch (py::error_already_set& e) {
      auto err = std::make_shared<std::string>(e.what());
      e.restore();
      PyErr_Clear();
      throw BackendError(std::string("[MTLCommandBuffer] completion handler raised: ") + *err);
    }
  };
}
}  // namespace

void bind_commands(py::module_& m) {
  // The three classes are registered before any method is defined, so that signatures naming
  // another of them (make_command_queue -> MTLCommandQueue) carry the type in docstrings and stubs.
  auto device = py::class_<Device, std::shared_ptr<Device>>(
      m, "MTLDevice", "A compute device. There is one object per device: MTLDevice('cpu') is MTLDevice('cpu:0').");
  auto queue = py::class_<CommandQueue, std::shared_ptr<CommandQueue>>(
      m, "MTLCommandQueue", "Runs committed command buffers in order on a worker thread.");
  auto cb = py::class_<CommandBuffer, std::shared_ptr<CommandBuffer>>(
      m, "MTLCommandBuffer",
      "Collects encoded work; commit() runs it on the queue's worker thread without the GIL. Errors raised "
      "there are stored and re-raised by wait_until_completed().");
  // MTLDevice(name) returns the canonical object (py::init would wrap it in a new Python object).
  device.attr("__new__") = py::staticmethod(py::cpp_function(
      [](const py::object&, const std::string& name) { return make_device(name); }, "cls"_a, "name"_a = "cpu",
      "The device 'backend' or 'backend:index' (e.g. 'cpu', 'cuda:1'), as MPSNN_DEVICE spells it."));
  device.attr("__init__") = py::cpp_function([](const py::object&, const py::args&, const py::kwargs&) {},
                                             py::is_method(device));
  device.def_property_readonly("name", &Device::name)
      .def_property_readonly("backend", &Device::backend)
      .def_property_readonly("index", &Device::index)
      .def_property_readonly("registry_id", &Device::id, "'backend:index'.")
      .def_property_readonly("memory_kind", [](const Device& d) { return std::string(memory_kind_name(d.memory_kind())); },
                             "'host', 'unified' or 'device': whether NumPy views of its memory are possible.")
      .def_property_readonly("has_unified_memory", [](const Device& d) { return d.host_accessible(); })
      .def("make_buffer", [](const DevicePtr& d, size_t length) { return std::make_shared<Buffer>(d, length); },
           "length"_a, "A new zero-filled MTLBuffer of `length` bytes (device.makeBuffer(length:)).")
      .def("make_command_queue", [](const DevicePtr& d) { return std::make_shared<CommandQueue>(d); },
           "A new MTLCommandQueue on this device.")
      .def("__repr__", [](const Device& d) { return "<MTLDevice '" + d.name() + "'>"; });
  m.def("MTLCreateSystemDefaultDevice", &system_default_device,
        "The default device: MPSNN_DEVICE ('cpu', 'cuda:1', ...) if set, else the first device of this build.");
  m.def("MTLCopyAllDevices", &all_devices, "Every device of this build.");
  m.def("available_backends", &available_backends, "Backends compiled into this build.");
  m.def("_set_vendor_library_dirs", &set_vendor_library_dirs, "dirs"_a,
        "Folders (site-packages/nvidia) where the CUDA backend looks for cuDNN when first used; set at import.");

  queue.def(py::init<DevicePtr>(), "device"_a)
      .def_property_readonly("device", &CommandQueue::device)
      .def_readwrite("label", &CommandQueue::label)
      .def("make_command_buffer", &CommandQueue::make_command_buffer, "A new MPSCommandBuffer on this queue.")
      .def("command_buffer", &CommandQueue::make_command_buffer, "Alias of make_command_buffer (Swift makeCommandBuffer).")
      .def("drain", &CommandQueue::drain, py::call_guard<ReleaseGil>(),
           "Wait until every buffer committed to this queue before the call completed (not those other threads "
           "commit meanwhile).");

  cb.def_property_readonly("device", &CommandBuffer::device)
      .def_property_readonly("command_queue", &CommandBuffer::queue)
      .def_property_readonly("status", &CommandBuffer::status)
      .def_property_readonly(
          "error",
          [](const CommandBuffer& c) -> py::object {
            auto e = c.error();
            if (!e) return py::none();
            try {
              std::rethrow_exception(e);
            } catch (const std::exception& ex) {
              return py::str(ex.what());
            } catch (...) {
              return py::str("unknown error");
            }
          },
          "Message of the first error of this buffer's work or handlers, or None.")
      .def_readwrite("label", &CommandBuffer::label)
      .def("commit", &CommandBuffer::commit)
      .def("wait_until_completed", &CommandBuffer::wait_until_completed, py::call_guard<ReleaseGil>(),
           "Block until the buffer completed; raises the first error of its work or handlers.")
      .def(
          "add_completed_handler", [](CommandBuffer& c, py::function fn) { c.add_completed_handler(python_handler(fn)); },
          "handler"_a, "Call handler(command_buffer) on the worker thread once the work completed.");
  // MPSCommandBuffer: the same object with commit_and_continue (graph.md §9.3).
  m.attr("MPSCommandBuffer") = cb;
  cb.def("commit_and_continue", &CommandBuffer::commit_and_continue, py::call_guard<ReleaseGil>(),
         "Run what was encoded so far now and keep the buffer open for more work.")
      .def_property_readonly("root_command_buffer", [](const std::shared_ptr<CommandBuffer>& c) { return c; })
      .def_static("command_buffer_from_command_queue",
                  [](const std::shared_ptr<CommandQueue>& q) { return q->make_command_buffer(); }, "command_queue"_a)
      .def(py::init([](const std::shared_ptr<CommandQueue>& q) { return q->make_command_buffer(); }), "command_queue"_a);
  m.def("_drain_all_queues", &drain_all_queues, py::call_guard<ReleaseGil>(),
        "Wait for the work committed so far to every queue.");
  m.def("_at_exit", &at_exit,
        "Registered with atexit: waits for the work committed so far (its completion handlers run), then stops "
        "every queue; buffers committed later complete with status error, running neither work nor handlers.");
}

}  // namespace mpsnn::bindings
