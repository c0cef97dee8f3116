#include "bindings/gil.h"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "core/command.h"
#include "core/errors.h"

namespace mpsnn::bindings {

namespace {
struct Gate {
  std::mutex mutex;
  std::condition_variable cv;
  bool closed = false;
  int busy = 0;  // PythonCalls in progress, and ReleaseGil sections taking the GIL back
  std::thread::id finalizer;  // the thread that ran at_exit (it finalizes the interpreter)
};
// Never destroyed: parked threads and queue threads may still use it while the process exits.
Gate& gate() {
  static Gate* g = new Gate;
  return *g;
}
thread_local int t_python_calls = 0;  // PythonCalls open on this thread

[[noreturn]] void park_forever() {
  for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
}
}  // namespace

// After the close the finalizing thread, and a thread inside a PythonCall, keep the GIL through a
// section (they must not park). Any other thread — a daemon thread still calling into mpsnn —
// releases it as before and parks at the section's end: keeping it there
// deadlocked the exit when such a thread waited (wait_until_completed) for a buffer whose
// completion handler had entered its PythonCall before the close and waited for the GIL, while
// at_exit waited for that handler.
ReleaseGil::ReleaseGil() {
  Gate& g = gate();
  std::lock_guard<std::mutex> lock(g.mutex);
  if (!g.closed || (std::this_thread::get_id() != g.finalizer && t_python_calls == 0)) release_.emplace();
}

ReleaseGil::~ReleaseGil() {
  if (!release_) return;
  Gate& g = gate();
  {
    std::unique_lock<std::mutex> lock(g.mutex);
    // Inside a PythonCall that began before the close, at_exit waits for us: taking the GIL is safe.
    if (g.closed && t_python_calls == 0) {
      lock.unlock();
      park_forever();
    }
    ++g.busy;
  }
  release_.reset();
  std::lock_guard<std::mutex> lock(g.mutex);
  --g.busy;
  g.cv.notify_all();
}

PythonCall::PythonCall() {
  if (!Py_IsInitialized()) return;
  Gate& g = gate();
  {
    std::lock_guard<std::mutex> lock(g.mutex);
    if (g.closed && !PyGILState_Check()) return;
    ++g.busy;
  }
  entered_ = true;
  ++t_python_calls;
  gil_.emplace();
}

PythonCall::~PythonCall() {
  if (!entered_) return;
  gil_.reset();
  --t_python_calls;
  Gate& g = gate();
  std::lock_guard<std::mutex> lock(g.mutex);
  --g.busy;
  g.cv.notify_all();
}

AcquireGil::AcquireGil() {
  MPSNN_CHECK(ok(), BackendError,
              "[mpsnn] the interpreter is exiting: a call into Python (data source, padding policy, allocator, "
              "transform provider) was refused");
}

void at_exit() {
  pybind11::gil_scoped_release nogil;
  drain_all_queues();
  {
    Gate& g = gate();
    std::unique_lock<std::mutex> lock(g.mutex);
    g.finalizer = std::this_thread::get_id();
    g.closed = true;
    g.cv.wait(lock, [&] { return g.busy == 0; });
  }
  // Without the GIL: a thread that commits meanwhile completes its buffer itself, with the GIL.
  stop_all_queues();
}

}  // namespace mpsnn::bindings
