// Python exception classes and the translation of C++ errors (STYLE.md §6). Each class also
// derives from the matching built-in, so `except ValueError` keeps working.
#include "bindings/common.h"

namespace mpsnn::bindings {

namespace {
PyObject* new_error(py::module_& m, const char* name, std::initializer_list<PyObject*> bases, const char* doc) {
  py::tuple b(bases.size());
  size_t i = 0;
  for (PyObject* base : bases) b[i++] = py::reinterpret_borrow<py::object>(base);
  const std::string qualified = std::string("mpsnn.") + name;
  PyObject* cls = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, b.ptr(), nullptr);
  if (!cls) throw py::error_already_set();
  m.add_object(name, py::reinterpret_steal<py::object>(cls));
  return cls;
}
}  // namespace

void bind_errors(py::module_& m) {
  static PyObject* base = new_error(m, "MPSError", {PyExc_Exception}, "Base class of every mpsnn error.");
  static PyObject* graph = new_error(m, "MPSGraphError", {base, PyExc_ValueError},
                                     "Graph construction or encode validation failed (a ValueError).");
  static PyObject* shape = new_error(m, "ShapeError", {graph}, "Bad shapes, channel counts, sizes or attributes (a ValueError).");
  static PyObject* dtype = new_error(m, "DTypeError", {base, PyExc_TypeError}, "Wrong element type or memory layout (a TypeError).");
  static PyObject* unsupported = new_error(m, "UnsupportedError", {base, PyExc_NotImplementedError},
                                           "The device cannot run this request (a NotImplementedError).");
  static PyObject* backend = new_error(m, "BackendError", {base, PyExc_RuntimeError}, "oneDNN / cuDNN / Metal failed (a RuntimeError).");
  static PyObject* temporary = new_error(m, "MPSTemporaryImageError", {base, PyExc_RuntimeError},
                                         "Temporary image misuse: read count, CPU access, other command buffer (a RuntimeError).");
  static PyObject* serialization = new_error(m, "SerializationError", {base, PyExc_ValueError},
                                             "Bytes that are not a valid serialized graph or node: truncated, corrupted, "
                                             "or another format version (a ValueError). Names the section, field and "
                                             "byte offset.");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ShapeError& e) {
      PyErr_SetString(shape, e.what());
    } catch (const DTypeError& e) {
      PyErr_SetString(dtype, e.what());
    } catch (const UnsupportedError& e) {
      PyErr_SetString(unsupported, e.what());
    } catch (const BackendError& e) {
      PyErr_SetString(backend, e.what());
    } catch (const GraphError& e) {
      PyErr_SetString(graph, e.what());
    } catch (const SerializationError& e) {
      PyErr_SetString(serialization, e.what());
    } catch (const TemporaryImageError& e) {
      PyErr_SetString(temporary, e.what());
    }
  });
}

}  // namespace mpsnn::bindings
