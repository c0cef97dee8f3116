#pragma once
// The GIL across interpreter exit. Python (3.11, 3.12) ends a thread that asks for the GIL once
// finalization has begun, with pthread_exit; with C++ frames on that thread's stack (noexcept
// destructors, catch (...)) that aborts the process. This happens to daemon threads that are
// inside an mpsnn call when the main thread exits, and to queue threads running completion
// handlers of work committed late. So the bindings give up and take the GIL only through these
// guards, and mpsnn's atexit hook (at_exit) closes them once the committed work has drained:
//
//  * ReleaseGil releases the GIL around C++ work. A section that began before the close parks its
//    thread for good at its end instead of taking the GIL back (the process is exiting; Python
//    3.14 parks such threads too). After the close, a section on another thread than the
//    finalizing one releases the GIL too and parks at its end (it may wait for a handler that
//    needs the GIL); only the finalizing thread, and a thread inside a PythonCall, keep it.
//  * PythonCall takes the GIL for a call into Python from C++ (completion handlers, data sources,
//    releasing Python objects). After the close it refuses on threads that do not hold the GIL:
//    ok() is false and the caller must not touch Python (handlers are skipped, objects leaked).
#include <pybind11/pybind11.h>

#include <optional>

namespace mpsnn::bindings {

class ReleaseGil {
 public:
  ReleaseGil();
  ~ReleaseGil();
  ReleaseGil(const ReleaseGil&) = delete;
  ReleaseGil& operator=(const ReleaseGil&) = delete;

 private:
  std::optional<pybind11::gil_scoped_release> release_;
};

class PythonCall {
 public:
  PythonCall();
  ~PythonCall();
  PythonCall(const PythonCall&) = delete;
  PythonCall& operator=(const PythonCall&) = delete;
  bool ok() const { return entered_; }

 private:
  bool entered_ = false;
  std::optional<pybind11::gil_scoped_acquire> gil_;
};

// PythonCall for code that cannot do without Python (data-source and padding adapters): throws
// BackendError when the call is refused, which fails the C++ operation that needed it.
class AcquireGil : public PythonCall {
 public:
  AcquireGil();
};

// The atexit hook: waits for the command buffers committed so far (their handlers run), closes
// the guards above, then stops the command queues (core/command.h stop_all_queues: later buffers
// complete with an error, without running work or handlers). Call with the GIL held, on the
// thread that will finalize the interpreter.
void at_exit();

}  // namespace mpsnn::bindings
