#pragma once
// MTLCommandQueue / MTLCommandBuffer. Encoding appends tasks; commit() hands the buffer to the
// queue's worker thread, which runs buffers in commit order. A task enqueues its work on the
// queue's device stream (on the CPU the work runs right then). The buffer completes when the
// device has finished that work (Stream::when_done): only then do completion handlers run and
// retained objects (results, temporaries, plan contexts) get released. Nothing throws out of the
// worker: the first error is stored and rethrown by wait_until_completed().
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/device.h"

namespace mpsnn {

// MTLCommandBufferStatus raw values.
enum class CommandBufferStatus : int { not_enqueued = 0, enqueued = 1, committed = 2, scheduled = 3, completed = 4, error = 5 };

class CommandQueue;
namespace detail {
struct QueueWorker;
}

class CommandBuffer : public std::enable_shared_from_this<CommandBuffer> {
 public:
  using Task = std::function<void(Stream&)>;
  using Handler = std::function<void(CommandBuffer&)>;

  explicit CommandBuffer(std::shared_ptr<CommandQueue> queue);
  ~CommandBuffer();

  const DevicePtr& device() const;
  const std::shared_ptr<CommandQueue>& queue() const { return queue_; }
  CommandBufferStatus status() const;
  std::exception_ptr error() const;

  // Appends work; only before commit().
  void encode(Task task, const char* what);
  // Makes the buffer fail as a whole: none of its work runs (what was encoded before included) and
  // it completes with `error` when committed. For an encode that failed halfway (a training
  // graph whose data-source update raised after earlier work was encoded), so that no half of a
  // step ever runs. Only before commit(); the first error stays.
  void abort(std::exception_ptr error);
  // Keeps an object alive until the buffer completes (results, temporaries, plans).
  void retain(std::shared_ptr<const void> object);
  void add_completed_handler(Handler handler);
  void commit();
  // Runs everything encoded so far on the calling thread and leaves the buffer open for more
  // work (MPSCommandBuffer.commit_and_continue).
  void commit_and_continue();
  // Blocks until completed; rethrows the stored error once. Called from one of this buffer's own
  // completion handlers it returns at once (the work has completed; waiting for the handlers to
  // end would never end).
  void wait_until_completed();
  bool committed() const;
  // Blocks until completed (work, handlers, releases) without consuming the stored error; from
  // this buffer's own completion handlers, returns at once.
  void wait_until_finished();
  // The final status once the encoded work has completed (completed or error; set before the
  // completion handlers run), 0 until then. Shared so that readers can tell after the buffer is gone.
  std::shared_ptr<const std::atomic<int>> completion_status() const { return completion_status_; }
  // Tasks encoded so far / run so far (commit_and_continue runs tasks before commit).
  size_t tasks_encoded() const;
  size_t tasks_run() const;

  std::string label;

 private:
  friend class CommandQueue;
  friend struct detail::QueueWorker;
  friend void stop_all_queues();
  void execute();   // on the worker thread
  void complete();  // once the device finished the buffer's work
  void abandon();   // completes with an error, running neither work nor handlers (queues stopped)
  void run_tasks(std::vector<Task>& tasks);

  std::shared_ptr<CommandQueue> queue_;
  mutable std::mutex mutex_;
  std::condition_variable done_cv_;
  CommandBufferStatus status_ = CommandBufferStatus::not_enqueued;
  std::vector<Task> tasks_;
  std::vector<Handler> handlers_;
  std::vector<std::shared_ptr<const void>> retained_;
  std::exception_ptr error_;
  bool error_reported_ = false;
  bool finished_ = false;  // work, handlers and releases all done
  std::thread::id handler_thread_;  // the thread running the completion handlers, while it does
  size_t tasks_encoded_ = 0, tasks_run_ = 0;
  std::shared_ptr<std::atomic<int>> completion_status_ = std::make_shared<std::atomic<int>>(0);
};

using CommandBufferPtr = std::shared_ptr<CommandBuffer>;

namespace detail {
// The thread behind a queue. It is detached and owns a reference to this state, so neither the
// queue nor a command buffer ever joins it (the last reference may be dropped on the worker).
struct QueueWorker {
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<CommandBufferPtr> pending;
  // Buffers committed / completed so far; buffers complete in commit order, so a drain waits
  // until `completed` reaches what `committed` was when it began.
  uint64_t committed = 0, completed = 0;
  bool stopping = false;
  bool started = false;
  static void loop(std::shared_ptr<QueueWorker> self);
};
}  // namespace detail

class CommandQueue : public std::enable_shared_from_this<CommandQueue> {
 public:
  explicit CommandQueue(DevicePtr device);
  ~CommandQueue();
  const DevicePtr& device() const { return device_; }
  // The device stream every buffer of this queue runs on.
  Stream& stream() const { return *stream_; }
  CommandBufferPtr make_command_buffer();
  // Waits until every buffer committed to this queue before the call has completed (buffers
  // committed meanwhile, e.g. by another thread that keeps committing, are not waited for).
  void drain();
  std::string label;

 private:
  friend class CommandBuffer;
  void submit(CommandBufferPtr cb);

  DevicePtr device_;
  std::unique_ptr<Stream> stream_;
  std::shared_ptr<detail::QueueWorker> worker_;
};

using CommandQueuePtr = std::shared_ptr<CommandQueue>;

// Waits until every buffer committed to any queue of the process before the call has completed
// (called at interpreter exit: a thread that keeps committing must not keep the exit waiting).
void drain_all_queues();
// Stops every queue for good (at process exit, after drain_all_queues): buffers not yet started,
// and any committed later, complete at once with an error, running neither their work nor their
// completion handlers; returns once the buffers already running have completed. Afterwards no
// queue thread runs anything, so the process can exit while other threads still commit.
void stop_all_queues();

}  // namespace mpsnn
